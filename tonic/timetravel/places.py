"""Where a stored record may point: the paths in the records of the files a notebook
wrote (fstravel.py's files record, a snapshot's and a run's records, records.py) are
paths tonic writes and deletes on a resume or an unchanged rerun, so a record read back
from the cache (restored from a backup, shared, damaged, edited) may name only the
places the notebook may write:

  - a path in the project (the notebook's folder), stored relative to it, without
    `.`, `..` or empty parts: `out/data.json`;
  - an absolute path outside it that the same record's observation saw the notebook
    write: the cells' "wrote" lists (recorder.py), or the files record's "wrote";

and never a path in tonic's cache, nor one under a folder that is a symbolic link now
(the notebook's writes are observed as real paths: a link there is someone else's).
Every state is a stored content's id, DIR, UNKNOWN, WRITING or None. A record that names
anything else is `DamagedRecord`: its reader ignores it (an earlier snapshot, or a
fresh run, with a note saying so).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tonic.store import DamagedRecord, is_id
from tonic.timetravel.deps import DIR, UNKNOWN, WRITING

# absolute path -> [starting state, state now] (fstravel.py)
Changes = dict[str, list[str | None]]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def project_of(notebook: Path) -> Path:
    """The notebook's folder, the project (a real path, as observed paths are)."""
    return Path(os.path.realpath(notebook.parent))


def stored(files: Mapping[str, list[str | None]], project: Path) -> Changes:
    """`files` as a record stores them: a path in `project` relative to it."""
    prefix = str(project).rstrip("/") + "/"
    return {p.removeprefix(prefix): list(pair) for p, pair in files.items()}


def outside(paths: Iterable[str], project: Path) -> list[str]:
    """The absolute paths outside `project` among `paths`, sorted."""
    return sorted({p for p in paths if os.path.isabs(p) and not _under(p, str(project))})


def wrote_of(cells: Iterable[object]) -> set[str]:
    """Every path the recorded cells were observed to write (their "wrote" lists)."""
    found: set[str] = set()
    for meta in cells:
        wrote = meta.get("wrote") if isinstance(meta, dict) else None
        if isinstance(wrote, list):
            found.update(w for w in wrote if isinstance(w, str))
    return found


def _state(value: object) -> str | None:
    if value is None or value in (DIR, UNKNOWN, WRITING) or is_id(value):
        return value  # type: ignore[return-value]
    raise DamagedRecord(f"it holds {str(value)[:40]!r}, which is not a file's state")


@dataclass(frozen=True)
class Places:
    """The places one notebook's records may name: `project` (the notebook's folder),
    and never `cache` (tonic's cache root)."""

    project: Path
    cache: Path

    @classmethod
    def of(cls, notebook: Path, cache: Path) -> Places:
        return cls(project_of(notebook), Path(cache))

    @functools.cached_property
    def caches(self) -> tuple[str, ...]:
        """The cache root as given and as it really is."""
        return (str(self.cache), os.path.realpath(self.cache))

    def files(self, doc: object, wrote: Iterable[str]) -> Changes:
        """A stored record's files as absolute paths; DamagedRecord when one of them is
        not a place the notebook may write (module docstring) or not a file's state."""
        if not isinstance(doc, dict):
            raise DamagedRecord("its files are not a table")
        observed = set(wrote)
        plain: set[str] = set()  # folders found to be no links (many paths share one)
        files: Changes = {}
        for key, pair in doc.items():
            path = self.place(key, observed, plain)
            if not isinstance(pair, list) or len(pair) != 2:
                raise DamagedRecord(f"its states of {path} are not a pair")
            files[path] = [_state(pair[0]), _state(pair[1])]
        return files

    def place(self, key: object, observed: set[str], plain: set[str] | None = None) -> str:
        """The absolute path a record's `key` names, if the notebook may write it
        (`plain`: folders already found to be no symbolic links, added to)."""
        if not isinstance(key, str) or not key or "\0" in key:
            raise DamagedRecord(f"it names {str(key)[:80]!r}, which is not a path")
        if key.startswith("/"):
            if key.startswith("//") or os.path.normpath(key) != key:
                raise DamagedRecord(f"it names {key[:200]}, which is not a plain path")
            if key not in observed:
                raise DamagedRecord(f"it names {key[:200]}, which no cell was seen to write")
            path = key
        else:
            if any(part in ("", ".", "..") for part in key.split("/")):
                raise DamagedRecord(f"it names {key[:200]!r}, which is not in the project")
            path = str(self.project / key)
        if any(_under(path, c) for c in self.caches):
            raise DamagedRecord(f"it names {path[:200]}, which is in tonic's cache")
        parent = os.path.dirname(path)
        if plain is None or parent not in plain:
            if os.path.realpath(parent) != parent:
                raise DamagedRecord(f"it names {path[:200]}, under a symbolic link")
            if plain is not None:
                plain.add(parent)
        return path
