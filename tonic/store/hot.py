"""Hot images: the newest snapshots' CRIU images, kept unpacked beside the store.

The store keeps every snapshot compressed and deduplicated; recreating its image files
before a restore takes time (about 100 ms at 50 MB of heap). The ingest worker, after it
has stored a dump, moves the dump's folder here instead of deleting it, and a restore
uses it as it is. The folder holds at most $TONIC_HOT_CACHE bytes (default 4G, so that a
2 GB heap's images fit; 0 turns it off), least recently used out first. A hot folder is
only a copy: the store stays the record, and a snapshot gone from the store is never
looked up here.

A hot folder is checked before each use, as the store checks every chunk it reads: each
file against the BLAKE3 digest taken when it was kept (about 2 GB/s a core, several
cores at once). A copy that fails (a flipped byte, a truncated or missing file) is
dropped, and the restore uses the store's copy instead.

    <cache>/hot/<snapshot id>/      image files, as CRIU wrote them
    <cache>/hot/<snapshot id>.ready {"bytes": size, "files": {name: digest}}; written
                                    last (the folder is usable)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import blake3

from tonic import settings
from tonic.store.fileio import write_all
from tonic.store.layout import HOT

_ID = re.compile(r"[0-9a-f]{64}")


def budget() -> int:
    """$TONIC_HOT_CACHE in bytes (tonic.settings)."""
    return settings.current().hot_cache


def _dir(root: Path) -> Path:
    return root / HOT


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def digest(path: Path) -> str:
    """The BLAKE3 digest of a file (read through a map, on all cores)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if path.stat().st_size:
        hasher.update_mmap(path)
    return hasher.hexdigest()


def _digests(folder: Path) -> dict[str, str]:
    return {f.name: digest(f) for f in sorted(folder.iterdir()) if f.is_file()}


def keep(root: Path, snapshot_id: str, images: Path) -> None:
    """Move a stored dump's folder in (or delete it when over budget or already there)."""
    limit = budget()
    target = _dir(root) / snapshot_id
    try:
        size = _size(images)
        if not _ID.fullmatch(snapshot_id) or size > limit or target.exists():
            return
        files = _digests(images)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        os.rename(images, target)
        ready = target.with_suffix(".ready")
        try:
            fd = os.open(ready, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                write_all(fd, json.dumps({"bytes": size, "files": files}).encode())
            finally:
                os.close(fd)
        except OSError:  # a full disk: neither half stays behind
            with contextlib.suppress(OSError):
                ready.unlink()
            shutil.rmtree(target, ignore_errors=True)
            raise
        trim(root, limit)
    except OSError:
        return
    finally:
        shutil.rmtree(images, ignore_errors=True)


def _ready(ready: Path) -> dict[str, object] | None:
    """A `.ready` file's fields, or None when it is not one (damaged, or of an older
    tonic, which kept no digests)."""
    try:
        doc = json.loads(ready.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("bytes"), int):
        return None
    return doc if isinstance(doc.get("files"), dict) else None


def kept(root: Path, snapshot_id: str) -> Path | None:
    """The unpacked images of a snapshot, if kept (not yet checked: `check`)."""
    folder = _dir(root) / snapshot_id
    return folder if folder.with_suffix(".ready").exists() else None


def check(root: Path, snapshot_id: str) -> str | None:
    """None when the kept copy is intact (it is marked as just used); else what is
    damaged (the caller drops it once nothing reads it: `drop`)."""
    folder = _dir(root) / snapshot_id
    ready = folder.with_suffix(".ready")
    doc = _ready(ready)
    expected: dict[str, str] = doc["files"] if doc is not None else {}  # type: ignore[assignment]
    try:
        found = _digests(folder)
    except OSError:
        found = {}
    if doc is None or found != expected:
        names = sorted(n for n in {*expected, *found} if expected.get(n) != found.get(n))
        return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "") or "its record"
    with contextlib.suppress(OSError):
        os.utime(ready)
    return None


def _entries(root: Path) -> list[tuple[float, int, str]]:
    """(last used, bytes, id) of every kept folder (a damaged record counts as empty)."""
    found = []
    for ready in _dir(root).glob("*.ready"):
        doc = _ready(ready)
        with contextlib.suppress(OSError):
            found.append((ready.stat().st_mtime, int(str(doc["bytes"])) if doc else 0, ready.stem))
    return sorted(found)


def drop(root: Path, snapshot_id: str) -> None:
    folder = _dir(root) / snapshot_id
    with contextlib.suppress(OSError):
        folder.with_suffix(".ready").unlink()
    # Renamed first, so that a restore never sees a half-deleted folder.
    doomed = folder.with_name(f".gone-{snapshot_id}-{time.monotonic_ns()}")
    with contextlib.suppress(OSError):
        os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def trim(root: Path, limit: int, keep_ids: set[str] | None = None, *, dry_run: bool = False) -> int:
    """Drop the least recently used folders down to `limit` bytes, and those whose
    snapshot is not in `keep_ids` (when given), and leftovers. Returns bytes freed
    (with `dry_run`, that would be freed: nothing is dropped)."""
    freed = 0
    entries = _entries(root)
    total = sum(size for _, size, _ in entries)
    for _, size, snapshot_id in entries:
        if total > limit or (keep_ids is not None and snapshot_id not in keep_ids):
            if not dry_run:
                drop(root, snapshot_id)
            total -= size
            freed += size
    if dry_run:
        return freed
    known = {snapshot_id for _, _, snapshot_id in _entries(root)}
    stale = time.time() - 600  # a folder a worker is still moving in is younger
    for leftover in _dir(root).glob("*"):
        with contextlib.suppress(OSError):
            if leftover.name not in known and leftover.stat().st_mtime < stale:
                shutil.rmtree(leftover, ignore_errors=True)
    return freed


def clear(root: Path) -> None:
    shutil.rmtree(_dir(root), ignore_errors=True)
