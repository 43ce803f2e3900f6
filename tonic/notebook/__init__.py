"""The notebook as text: reading it (source.py, loader.py), its module kind (modkind.py),
parsing (syntax.py) and splitting it into cells (cells.py), pause sites (instrument.py)."""
