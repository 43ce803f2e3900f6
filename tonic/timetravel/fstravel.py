"""Filesystem time travel: the files a notebook writes roll back and forward with its
snapshots; files it does not write are never touched.

What the notebook writes is observed (tonic/observe/): every file and directory its
processes create, write, truncate, rename or delete, anywhere, and nothing of another
program's. A snapshot after cell k records, for every path cells 1..k changed, its
starting state and its state after cell k (a blob id, DIR, or None for nothing there).

The starting state of a path is what the run starts from: what it was before the
notebook first wrote it, as long as the path is as the notebook's last run left it (or
that run died while it wrote it: a run keeps its last state durable as it goes, each
path it is writing marked WRITING, its real state written when it ends); if
someone else changed it since (a hand edit, `node FILE` run in between), it is the path
as it is now. So every run behaves as a first `node FILE` on the files as they are,
except for the notebook's own writes, which it rolls back. A snapshot whose cells wrote
a path is resumed only if that path's starting state is the one the snapshot's run had.

Before node's main thread first opens, writes, renames or deletes a path, the kernel
has tonic keep what is there (Recorder.save). A file a child process or a worker
changed before tonic knew it ("?": it existed before the notebook's first run) takes
its starting state from the disk at the next run, and the snapshots after that change
are not resumed; from then on it is known.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tonic.store import FILES, DamagedRecord, Store
from tonic.timetravel.deps import DIR
from tonic.timetravel.deps import UNKNOWN as UNKNOWN  # fstravel.UNKNOWN, as before
from tonic.timetravel.deps import WRITING as WRITING
from tonic.timetravel.places import Places, outside, stored

MAX_FILE = 64 << 20

# absolute path -> [starting state, state now] (blob id, DIR, UNKNOWN or None)
Changes = dict[str, list[str | None]]
States = dict[str, str | None]
Digest = Callable[[str], str | None]
FILES_RECORD_VERSION = 3  # 3: paths in the project relative to it, "wrote", sealed


def is_blob(state: str | None) -> bool:
    """Whether a path's state is stored content (not DIR, UNKNOWN or None)."""
    return state is not None and state not in (DIR, UNKNOWN, WRITING)


def blobs_of(files: Changes) -> list[str]:
    """The stored contents a record of file changes needs."""
    return sorted({b for pair in files.values() for b in pair if b is not None and is_blob(b)})


def kept(store: Store, files: Changes) -> Changes:
    """`files`, when the store holds every content they name; else DamagedRecord (a
    rollback to a content that is gone would stop half way)."""
    if any(not store.has_blob(b) for b in blobs_of(files)):
        raise DamagedRecord("a content it names is missing from the cache")
    return files


def state_of(path: str, digest: Digest) -> str | None:
    """What is at `path`: its content's digest, DIR, or None."""
    if os.path.isdir(path) and not os.path.islink(path):
        return DIR
    return digest(path) if os.path.lexists(path) else None


def starting_states(last: Changes, digest: Digest) -> States:
    """The starting state of every path the notebook's last run wrote (module docstring)."""
    states: dict[str, str | None] = {}
    for path, (before, after) in last.items():
        now = state_of(path, digest)
        ours = now == after or after == WRITING
        states[path] = before if ours and before != UNKNOWN else now
    return states


def unresumable(
    files: Changes, starting: dict[str, str | None], digest: Callable[[str], str | None]
) -> str | None:
    """None when a snapshot's (or stored run's) writes fit today's starting states; else
    the first path that does not."""
    for path in sorted(files):
        before = files[path][0]
        now = starting[path] if path in starting else state_of(path, digest)
        if before != now:
            return path
    return None


@dataclass
class Tracker:
    """Follows one run's writes, storing contents through `put`."""

    put: Callable[[bytes], str]
    before: dict[str, str | None] = field(default_factory=dict)  # starting state per path
    after: dict[str, str | None] = field(default_factory=dict)  # now, per path the run changed
    broken: str | None = None  # why this run's file state cannot be snapshotted

    def start(self, starting: dict[str, str | None], target: Changes) -> None:
        """Begin from the disk in `target`'s state (a snapshot's writes) and `starting`."""
        self.before = {**starting, **{p: pair[0] for p, pair in target.items()}}
        self.after = {p: pair[1] for p, pair in target.items()}

    def step(self, changed: Iterable[tuple[str, bool]]) -> None:
        """Record the paths changed since the last step: (path, created: it did not exist
        before this change)."""
        for path, created in changed:
            if created and path not in self.before and not os.path.lexists(path):
                continue  # made and gone again (CRIU leaves such a file at each dump)
            if path not in self.before:
                self.before[path] = None if created else UNKNOWN
            self.after[path] = self.state(path)

    def state(self, path: str, *, quiet: bool = False) -> str | None:
        """What is at `path` now, its content stored (UNKNOWN: it cannot be kept;
        `quiet`: that alone does not stop this run's snapshots)."""
        if os.path.isdir(path) and not os.path.islink(path):
            return DIR
        if not os.path.lexists(path):
            return None
        try:
            if os.path.getsize(path) > MAX_FILE:
                if not quiet:
                    self.broken = f"{path} is over {MAX_FILE >> 20} MiB"
                return UNKNOWN
            with open(path, "rb") as f:
                return self.put(f.read())
        except OSError as err:
            if not quiet:
                self.broken = f"{path} cannot be read ({err.strerror})"
            return UNKNOWN

    def changes(self) -> Changes:
        """[starting state, state now] of every path the run changed."""
        return {p: [self.before.get(p), b] for p, b in self.after.items()}


def _record_name(notebook: Path) -> str:
    return hashlib.sha256(str(notebook).encode()).hexdigest()[:32]


def load_last(store: Store, notebook: Path) -> Changes:
    """path -> [starting, after] of every path the notebook's last run changed;
    DamagedRecord when its record is damaged, of another version, or names a place the
    notebook may not write (places.py)."""
    data = store.get_record(FILES, _record_name(notebook))
    if data is None:
        return {}
    if data.get("version") != FILES_RECORD_VERSION:
        raise DamagedRecord("it was made by another version of tonic")
    if data.get("notebook") != str(notebook):
        raise DamagedRecord("it is another notebook's")
    wrote = data.get("wrote")
    if not isinstance(wrote, list):
        raise DamagedRecord("it has no list of the paths the notebook wrote")
    places = Places.of(notebook, store.root)
    return kept(store, places.files(data.get("files"), (str(w) for w in wrote)))


def ignored(err: DamagedRecord) -> str:
    """The note on a files record that is not used."""
    return (
        f"the record of the files the notebook last wrote cannot be used ({err}): ignored, "
        "its files are taken as they are"
    )


def save_last(store: Store, notebook: Path, files: Changes, wrote: Iterable[str]) -> None:
    """Remember the last state (a record under files/, declaring the blobs gc keeps);
    `wrote`: the paths the notebook's cells were seen to write (those outside its
    folder are stored, the places its absolute paths may name)."""
    project = Places.of(notebook, store.root).project
    doc = {
        "version": FILES_RECORD_VERSION,
        "notebook": str(notebook),
        "files": stored(files, project),
        "wrote": outside(set(wrote) & set(files), project),
    }
    store.put_record(FILES, _record_name(notebook), doc, blobs=blobs_of(files))


def plan_rollback(
    target: Changes,
    last: Changes,
    starting: dict[str, str | None],
    digest: Callable[[str], str | None],
) -> dict[str, str | None]:
    """The writes that put the disk into `target`'s state: each path it changed as it
    left it, every other path the last run changed back to its starting state."""
    writes: dict[str, str | None] = {}
    for path in sorted(set(target) | set(last)):
        want = target[path][1] if path in target else starting.get(path)
        if want == UNKNOWN or state_of(path, digest) == want:
            continue
        writes[path] = want
    return writes


def _plain_parent(path: str) -> bool:
    parent = os.path.dirname(path)
    return os.path.realpath(parent) == parent


def apply(writes: dict[str, str | None], get: Callable[[str], bytes]) -> None:
    """Make each path hold its state (files atomically): deepest removals first, so a
    directory the notebook made is empty when it goes (one that is not stays). A path
    whose folder is a symbolic link is not touched (places.py: one is not the notebook's)."""
    writes = {p: w for p, w in writes.items() if _plain_parent(p)}
    for path in sorted((p for p, w in writes.items() if w is None), reverse=True):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            continue
    for path, state in sorted(writes.items()):
        if state is None:
            continue
        target = Path(path)
        if state == DIR:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.tonic-")
        with os.fdopen(fd, "wb") as f:
            f.write(get(state))
        os.replace(tmp, target)
