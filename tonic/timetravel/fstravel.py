"""Filesystem time travel: the files a notebook writes roll back and forward with its
snapshots.

Covered: regular files under the notebook's directory, recursively, except inside
`node_modules`, `.git` and other dot-directories, and files over 64 MiB. Not covered:
anything outside that directory (/tmp, $HOME, ...), symlinks' targets, permissions beyond
the executable bit, and directories themselves (they are created as needed, never
removed). A file the notebook writes but tonic cannot cover (too big) stops snapshots of
that run, so a later run never resumes with it out of step.

A run starts from the state before the notebook first wrote anything: each run behaves as
the first `node FILE` in that directory. A snapshot after cell k records, for every file
cells 1..k changed, its content before the run and after cell k. Resuming from it, tonic
puts every file the snapshot or the last run touched into the snapshot's state, but only
if the file is still as the last run left it: a file edited by hand since then is never
overwritten or deleted; tonic stops with an error naming it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonic.errors import TonicError
from tonic.store import FILES, Store

MAX_FILE = 64 << 20
MAX_FILES = 20000
RACY_NS = 2_000_000_000  # stats younger than this are not trusted next time
SKIP_DIRS = frozenset({"node_modules", ".git"})

# path relative to the project -> blob id of its content, or None when it does not exist
Contents = dict[str, str | None]


class FileConflictError(TonicError):
    """A file the notebook wrote was changed by hand since tonic last ran it."""


@dataclass(frozen=True)
class Stat:
    size: int
    mtime_ns: int
    ino: int
    mode: int
    ctime_ns: int  # changes with every write, and cannot be set back by hand


def scan(root: Path, skip: frozenset[Path] = frozenset()) -> dict[str, Stat] | None:
    """Stat of every covered file under root; None when there are too many to follow."""
    found: dict[str, Stat] = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if path in skip:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIP_DIRS and not entry.name.startswith("."):
                        stack.append(path)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found[str(path.relative_to(root))] = Stat(
                st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, st.st_ctime_ns
            )
            if len(found) > MAX_FILES:
                return None
    return found


@dataclass
class Tracker:
    """Follows one run's writes under `root`, storing contents through `put`."""

    root: Path
    put: Callable[[bytes], str]
    get: Callable[[str], bytes]
    skip: frozenset[Path] = frozenset()
    before: Contents = field(default_factory=dict)  # content before the run, per path
    after: Contents = field(default_factory=dict)  # content now, per path the run changed
    broken: str | None = None  # why this run's file state cannot be snapshotted
    _last: dict[str, Stat] = field(default_factory=dict)
    _hashes: dict[str, str] = field(default_factory=dict)  # path -> blob of _last content

    def start(
        self,
        before: Contents | None = None,
        after: Contents | None = None,
        known: dict[str, tuple[Stat, str]] | None = None,
    ) -> None:
        """Begin following from the disk as it is now (after any rollback). `known`:
        files stored by an earlier run (`stats()`), not read again while their stat is
        the same."""
        self.before = dict(before or {})
        self.after = dict(after or {})
        state = scan(self.root, self.skip)
        if state is None:
            self.broken = f"more than {MAX_FILES} files under {self.root}"
            state = {}
        self._last = state
        known = known or {}
        # Keep every covered file's content, so that a cell that changes a file which
        # existed before the run can be rolled back (the store deduplicates).
        for rel, stat in state.items():
            seen = known.get(rel)
            blob = seen[1] if seen is not None and seen[0] == stat else self._blob(rel, stat)
            if blob is not None:
                self._hashes[rel] = blob

    def stats(self) -> dict[str, tuple[Stat, str]]:
        """Every covered file's stat and stored content, as of the last step."""
        return {
            rel: (st, self._hashes[rel]) for rel, st in self._last.items() if rel in self._hashes
        }

    def _blob(self, rel: str, stat: Stat) -> str | None:
        if stat.size > MAX_FILE:
            self.broken = f"{rel} is over {MAX_FILE >> 20} MiB"
            return None
        try:
            data = (self.root / rel).read_bytes()
        except OSError:
            return None
        return self.put(data)

    def step(self) -> None:
        """Record what changed since the last step (call at every pause and at the end)."""
        if self.broken is not None:
            return
        now = scan(self.root, self.skip)
        if now is None:
            self.broken = f"more than {MAX_FILES} files under {self.root}"
            return
        for rel in set(now) | set(self._last):
            old, new = self._last.get(rel), now.get(rel)
            if old == new:
                continue
            if rel not in self.before and rel not in self.after:
                # First change this run: what it was before is what the last step saw.
                self.before[rel] = None if old is None else self._prior(rel)
            blob = None if new is None else self._blob(rel, new)
            self.after[rel] = blob
            if blob is None:
                self._hashes.pop(rel, None)
            else:
                self._hashes[rel] = blob
        self._last = now

    def _prior(self, rel: str) -> str | None:
        blob = self._hashes.get(rel)
        if blob is None:
            self.broken = f"tonic could not record {rel} before it changed"
        return blob

    def changes(self) -> dict[str, list[str | None]]:
        """[content before the run, content now] of every file the run changed."""
        return {p: [self.before.get(p), b] for p, b in self.after.items()}


def hash_file(path: Path, put: Callable[[bytes], str]) -> str | None:
    try:
        return put(path.read_bytes()) if path.is_file() else None
    except OSError:
        return None


def _record_name(notebook: Path) -> str:
    """The name of the notebook's last-state record; its stats record adds ".stat"."""
    return hashlib.sha256(str(notebook).encode()).hexdigest()[:32]


def load_last(store: Store, notebook: Path) -> dict[str, list[str | None]]:
    """path -> [before, after] of every file the notebook's last run changed."""
    data = store.get_record(FILES, _record_name(notebook))
    files = data.get("files", {}) if data is not None else {}
    if not isinstance(files, dict):
        return {}
    return {str(k): list(v) for k, v in files.items()}


def save_last(store: Store, notebook: Path, files: dict[str, list[str | None]]) -> None:
    blobs = {b for pair in files.values() for b in pair if b is not None}
    _write_record(store, _record_name(notebook), notebook, files, blobs)


def _write_record(store: Store, name: str, notebook: Path, files: object, blobs: set[str]) -> None:
    """A record under files/ (atomically replaced), declaring the blobs gc keeps for it."""
    doc = {"notebook": str(notebook), "files": files}
    store.put_record(FILES, name, doc, blobs=blobs)


def load_stats(
    store: Store, notebook: Path, exists: Callable[[str], bool]
) -> dict[str, tuple[Stat, str]]:
    """The project files' stats and stored contents the notebook's last run saw (those
    whose content is still in the store)."""
    data = store.get_record(FILES, f"{_record_name(notebook)}.stat")
    try:
        rows: Any = data["files"] if data is not None else {}
        return {
            str(rel): (Stat(*(int(x) for x in row[:5])), str(row[5]))
            for rel, row in rows.items()
            if exists(str(row[5]))
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}


def save_stats(store: Store, notebook: Path, stats: dict[str, tuple[Stat, str]]) -> None:
    """Remember the stats; a record under files/ that declares the contents' blobs.
    Files changed in the last seconds are left out: a second write within the file
    system's timestamp granularity could leave the same stat (git's "racy" entries)."""
    settled = time.time_ns() - RACY_NS
    rows = {
        rel: [st.size, st.mtime_ns, st.ino, st.mode, st.ctime_ns, blob]
        for rel, (st, blob) in stats.items()
        if st.mtime_ns < settled
    }
    blobs = {str(row[5]) for row in rows.values()}
    _write_record(store, f"{_record_name(notebook)}.stat", notebook, rows, blobs)


def plan_rollback(
    root: Path,
    target: dict[str, list[str | None]],
    last: dict[str, list[str | None]],
    digest: Callable[[bytes], str],
) -> dict[str, str | None]:
    """The writes that put the disk into `target`'s state ([before, after] per path;
    paths absent from it go back to what they were before the notebook wrote them).
    Raises FileConflictError when a file is not as the last run left it."""
    writes: dict[str, str | None] = {}
    for rel in sorted(set(target) | set(last)):
        want = target[rel][1] if rel in target else last[rel][0]
        expected = last[rel][1] if rel in last else target[rel][0]
        path = root / rel
        try:
            current = digest(path.read_bytes()) if path.is_file() else None
        except OSError:
            current = None
        if current == want:
            continue
        if current != expected:
            raise FileConflictError(
                f"{path} changed since tonic last ran this notebook; tonic will not "
                "overwrite or delete it. Move it away (or restore it) and run again"
            )
        writes[rel] = want
    return writes


def apply(root: Path, writes: dict[str, str | None], get: Callable[[str], bytes]) -> None:
    """Make each file hold its blob's content (atomically), or delete it for None."""
    for rel, blob in writes.items():
        path = root / rel
        if blob is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tonic-")
        with os.fdopen(fd, "wb") as f:
            f.write(get(blob))
        os.replace(tmp, path)
