"""`tonic export`'s parts: names (npm rules), ignore (gitignore semantics), deps (local
modules and packages), package (the package's layout and fields), render (jinja2
templates) and write (atomic output, npm pack)."""
