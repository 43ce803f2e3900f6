"""Landed snapshots: a dump the ingest worker has been handed but not stored yet.

Storing a big dump (hashing, compressing, writing chunks) takes seconds a gigabyte; the
next run should not wait for it when the image files are right there. So the run writes,
beside the dump's folder (the worker's, in tmp/), a record naming the snapshot: its id,
tag and meta, as the store will publish them. The next run finds it by tag (`landed`)
along with the store's snapshots and restores straight from the folder (`using`, which
holds a shared lock on the record meanwhile). Once the worker has stored the dump, it
takes the record away (`lift`: an exclusive lock first, so no restore is reading the
folder) before it moves the folder into the hot cache or deletes it.

    <cache>/tmp/dump.<owner>.<token>/     the dump's image files (the worker's)
    <cache>/tmp/landed.<owner>.<token>    {"id", "tag", "created", "meta", "bytes", "files"}

Both names carry the worker as their owner: a killed worker's go with Store.sweep. A
record is written whole (a temporary name, then renamed) or not at all; what cannot be
read is no snapshot. A landed snapshot is only ever a faster way to one the store is
about to hold: missing it costs a longer run, never a wrong one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from tonic.store.fileio import write_all
from tonic.store.layout import TMP, owner_of
from tonic.store.snapshots import SnapshotInfo, is_valid_id

KIND = "landed"
DUMP = "dump"


def record_path(images: Path) -> Path | None:
    """The record beside a dump folder of the worker's (None: not a name of that form)."""
    kind, dot, rest = images.name.partition(".")
    if kind != DUMP or not dot or owner_of(images.name) is None:
        return None
    return images.with_name(f"{KIND}.{rest}")


def _images_of(record: Path) -> Path:
    """The dump folder beside a record (the inverse of `record_path`)."""
    return record.with_name(DUMP + record.name[len(KIND) :])


def land(images: Path, snapshot_id: str, tag: str, meta: dict[str, object]) -> None:
    """Name the dump in `images` as the snapshot the worker will store (best effort)."""
    record = record_path(images)
    if record is None or not is_valid_id(snapshot_id):
        return
    files = [p for p in images.iterdir() if p.is_file()]
    doc = {
        "id": snapshot_id,
        "tag": tag,
        "created": time.time(),
        "meta": meta,
        "bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
    }
    partial = record.with_name(record.name + "-partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, json.dumps(doc).encode())
    finally:
        os.close(fd)
    os.rename(partial, record)


def _records(root: Path) -> Iterator[tuple[Path, dict[str, object]]]:
    """Each readable record of a live worker whose folder is there."""
    try:
        names = [n for n in os.listdir(root / TMP) if n.startswith(KIND + ".")]
    except OSError:
        return
    for name in names:
        owner = owner_of(name)
        path = root / TMP / name
        images = _images_of(path)
        if owner is None or not owner.alive() or not images.is_dir():
            continue
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and is_valid_id(doc.get("id")):
            yield path, doc


def landed(root: Path) -> dict[str, list[SnapshotInfo]]:
    """The landed snapshots by tag, newest first."""
    found: dict[str, list[SnapshotInfo]] = {}
    for _, doc in _records(root):
        tag, meta = doc.get("tag"), doc.get("meta")
        created, size, files = doc.get("created"), doc.get("bytes"), doc.get("files")
        if not isinstance(tag, str) or not isinstance(meta, dict):
            continue
        if not isinstance(created, float | int) or not isinstance(size, int):
            continue
        count = files if isinstance(files, int) else 0
        info = SnapshotInfo(str(doc["id"]), tag, float(created), meta, size, count)
        found.setdefault(tag, []).append(info)
    for infos in found.values():
        infos.sort(key=lambda i: i.created, reverse=True)
    return found


def before(
    landed: dict[str, list[SnapshotInfo]], tag: str, stored: list[SnapshotInfo]
) -> list[SnapshotInfo]:
    """The snapshots of `tag` to try, in order: the landed ones (the newest), then the
    store's others (a landed one may be stored already)."""
    first = landed.get(tag, [])
    ids = {i.id for i in first}
    return first + [i for i in stored if i.id not in ids]


@contextlib.contextmanager
def _locked(record: Path, mode: int) -> Iterator[bool]:
    """The record flock'ed (`mode`); False when it is gone (taken away meanwhile)."""
    try:
        fd = os.open(record, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        fcntl.flock(fd, mode)
        yield os.fstat(fd).st_nlink > 0
    finally:
        os.close(fd)


@contextlib.contextmanager
def using(root: Path, snapshot_id: str) -> Iterator[Path | None]:
    """The folder of the landed snapshot, kept from the worker while in use (None: none
    is landed, or the worker has just taken it away)."""
    for path, doc in _records(root):
        if doc.get("id") != snapshot_id:
            continue
        with _locked(path, fcntl.LOCK_SH) as there:
            if there:
                yield _images_of(path)
                return
    yield None


def lift(images: Path) -> None:
    """The worker's: take the record of a dump away once no restore reads its folder."""
    record = record_path(images)
    if record is None:
        return
    with _locked(record, fcntl.LOCK_EX) as there, contextlib.suppress(OSError):
        if there:
            os.unlink(record)
