"""Snapshots: a directory of image files stored as chunks, with a manifest; found by id
or by tag.

    snapshots/<id>/manifest.json   the files, their modes and their chunks' ids
    snapshots/<id>/info.json       the same without "files" (cheap to list)
    index/<sha256(tag)[:32]>/<id>  empty file per snapshot of a tag, for find(tag)

(layout.py describes the fields.) Crash safety: a snapshot is a directory staged under
tmp/ and published by one rename into snapshots/, so a reader sees a whole snapshot or
none; the first one published under an id wins. A killed ingest leaves only tmp entries
and objects no snapshot refers to, both of which gc removes. Its tag link is made before
the publishing rename: until then it dangles (find skips it, gc removes it after a
crash), and after it the snapshot is findable at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tonic.store import chunking, materialize
from tonic.store.chunking import FileEntry
from tonic.store.fileio import fsync_dir, rmtree, write_all
from tonic.store.layout import INDEX, SNAPSHOTS, Root, StoreError, name_digest
from tonic.store.objects import Objects, is_id

_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    tag: str
    created: float
    meta: dict[str, object]
    logical_bytes: int  # sum of the image files' sizes
    files: int = 0  # number of image files


def check_id(snapshot_id: str) -> None:
    if not is_valid_id(snapshot_id):
        raise StoreError(f"invalid snapshot id {snapshot_id!r}")


def is_valid_id(snapshot_id: object) -> bool:
    return isinstance(snapshot_id, str) and _ID.fullmatch(snapshot_id) is not None


def info_of(doc: dict[str, object]) -> SnapshotInfo | None:
    """The info in a manifest or info.json, or None when it is damaged."""
    meta, created, size = doc.get("meta"), doc.get("created"), doc.get("logical_bytes")
    if not isinstance(meta, dict) or not isinstance(created, int | float):
        return None
    return SnapshotInfo(
        id=str(doc["id"]),
        tag=str(doc.get("tag", "")),
        created=float(created),
        meta=meta,
        logical_bytes=size if isinstance(size, int) else 0,
        files=int(str(doc.get("nfiles", 0))),
    )


def objects_of(manifest: dict[str, object]) -> set[str]:
    """The objects a snapshot refers to: its chunks and meta["blobs"]."""
    keys: set[str] = set()
    files = manifest.get("files")
    if isinstance(files, dict):
        for entry in files.values():
            if isinstance(entry, dict) and isinstance(entry.get("chunks"), list):
                keys.update(str(c) for c in entry["chunks"])
    meta = manifest.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("blobs"), list):
        keys.update(b for b in meta["blobs"] if is_id(b))
    return keys


def _newest_first(found: list[SnapshotInfo]) -> list[SnapshotInfo]:
    return sorted(found, key=lambda i: (i.created, i.id), reverse=True)


class Snapshots:
    """The snapshots under `root`, their chunks in `objects`."""

    def __init__(self, root: Root, objects: Objects, chunk_size: int) -> None:
        self.root, self.objects, self.chunk_size = root, objects, chunk_size

    # -- writing ------------------------------------------------------------------------

    def ingest(
        self,
        snapshot_id: str,
        tag: str,
        image_dir: Path,
        meta: Mapping[str, object],
        *,
        durable: bool = False,
    ) -> SnapshotInfo:
        """Store every regular file under `image_dir` as snapshot `snapshot_id`, findable
        by `tag`. Publishing an id that exists is a no-op (the first one wins)."""
        check_id(snapshot_id)
        meta_json = json.loads(json.dumps(meta))  # a private copy; fails early if not JSON
        image_dir = Path(image_dir)
        base = self.root.ensure()
        with self.root.shared():
            existing = self.info(snapshot_id)
            if existing is not None:
                self.link(base, existing.tag, snapshot_id)
                return existing
            if not image_dir.is_dir():
                raise StoreError(f"no image directory {image_dir}")
            files = chunking.store_files(self.objects, base, image_dir, self.chunk_size, durable)
            info = SnapshotInfo(
                id=snapshot_id,
                tag=tag,
                created=time.time(),
                meta=meta_json,
                logical_bytes=sum(f.size for f in files),
                files=len(files),
            )
            self.link(base, tag, snapshot_id)  # dangles until published
            try:
                published = self._publish(base, info, files, durable)
            except BaseException:  # e.g. a full disk: no dangling link stays behind
                if self.info(snapshot_id) is None:
                    self._unlink(base, tag, snapshot_id)
                raise
            if published.tag != tag:  # another process published this id first
                self._unlink(base, tag, snapshot_id)
                self.link(base, published.tag, published.id)
            return published

    def _publish(
        self, base: Path, info: SnapshotInfo, files: list[FileEntry], durable: bool
    ) -> SnapshotInfo:
        head: dict[str, object] = {
            "id": info.id,
            "tag": info.tag,
            "created": info.created,
            "meta": info.meta,
            "logical_bytes": info.logical_bytes,
            "nfiles": info.files,
        }
        manifest = dict(head)
        manifest["chunk_size"] = self.chunk_size
        manifest["files"] = {
            f.name: {"size": f.size, "mode": f.mode, "chunks": f.chunks} for f in files
        }
        stage = self.root.tmp_name(base, "snap")
        stage.mkdir(mode=0o700)
        try:
            for name, doc in (("manifest.json", manifest), ("info.json", head)):
                fd = os.open(
                    stage / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
                )
                try:
                    write_all(fd, json.dumps(doc, separators=(",", ":")).encode())
                    if name == "manifest.json" or durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            try:
                os.rename(stage, base / SNAPSHOTS / info.id)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                first = self.info(info.id)
                if first is None:
                    raise StoreError(f"cannot publish snapshot {info.id}: {err}") from err
                return first
            if durable:
                fsync_dir(base / SNAPSHOTS)
            return info
        finally:
            rmtree(stage)

    @staticmethod
    def link(base: Path, tag: str, snapshot_id: str) -> None:
        """Make the snapshot findable by `tag` (index/)."""
        folder = base / INDEX / name_digest(tag)
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(folder / snapshot_id, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)

    @staticmethod
    def _unlink(base: Path, tag: str, snapshot_id: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(base / INDEX / name_digest(tag) / snapshot_id)

    def unpublish(self, base: Path, snapshot_id: str, tag: str | None) -> bool:
        """Take a snapshot out of snapshots/ atomically, then delete it."""
        stage = self.root.tmp_name(base, "rm")
        try:
            os.rename(base / SNAPSHOTS / snapshot_id, stage)
        except FileNotFoundError:
            return False
        if tag is not None:
            self._unlink(base, tag, snapshot_id)
        rmtree(stage)
        return True

    def remove(self, snapshot_id: str) -> bool:
        """Remove one snapshot (e.g. a damaged one); its objects go at the next gc.
        False when there was no such snapshot."""
        check_id(snapshot_id)
        if self.root.reader() is None:
            return False
        base = self.root.ensure()
        with self.root.shared():
            doc = self.load(base, snapshot_id, "info.json")
            tag = str(doc.get("tag", "")) if doc is not None else None
            return self.unpublish(base, snapshot_id, tag)

    # -- reading ------------------------------------------------------------------------

    @staticmethod
    def load(base: Path, snapshot_id: str, name: str) -> dict[str, object] | None:
        """A snapshot's manifest.json or info.json; None when missing or damaged."""
        try:
            with open(base / SNAPSHOTS / snapshot_id / name, "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError, RecursionError):
            return None
        return doc if isinstance(doc, dict) and doc.get("id") == snapshot_id else None

    def info(self, snapshot_id: str) -> SnapshotInfo | None:
        base = self.root.reader()
        if base is None or not is_valid_id(snapshot_id):
            return None
        doc = self.load(base, snapshot_id, "info.json")
        return info_of(doc) if doc is not None else None

    def find(self, tag: str) -> list[SnapshotInfo]:
        """The snapshots published with `tag`, newest first."""
        base = self.root.reader()
        if base is None:
            return []
        try:
            names = os.listdir(base / INDEX / name_digest(tag))
        except OSError:
            return []
        return _newest_first([i for n in names if (i := self.info(n)) is not None and i.tag == tag])

    def every(self) -> list[SnapshotInfo]:
        """Every readable snapshot, newest first."""
        base = self.root.reader()
        if base is None:
            return []
        try:
            names = os.listdir(base / SNAPSHOTS)
        except OSError:
            return []
        return _newest_first([i for n in names if (i := self.info(n)) is not None])

    def touch(self, snapshot_id: str) -> None:
        """Mark the snapshot used now (a restore): its folder's time (last_used)."""
        base = self.root.reader()
        if base is not None and is_valid_id(snapshot_id):
            with contextlib.suppress(OSError):
                os.utime(base / SNAPSHOTS / snapshot_id)

    def last_used(self, info: SnapshotInfo) -> float:
        """When the snapshot was last restored, or made."""
        base = self.root.reader()
        try:
            used = os.stat(base / SNAPSHOTS / info.id).st_mtime if base is not None else 0.0
        except OSError:
            used = 0.0
        return max(info.created, used)

    @staticmethod
    def own_bytes(base: Path, snapshot_id: str) -> int:
        """On-disk bytes of the snapshot's manifest and info."""
        total = 0
        with contextlib.suppress(OSError), os.scandir(base / SNAPSHOTS / snapshot_id) as it:
            total = sum(e.stat(follow_symlinks=False).st_size for e in it)
        return total

    def stored_bytes(self, snapshot_id: str) -> int:
        """On-disk bytes of the distinct objects the snapshot refers to (objects shared
        with other snapshots counted in full), plus its manifest."""
        base = self.root.reader()
        if base is None:
            return 0
        check_id(snapshot_id)
        manifest = self.load(base, snapshot_id, "manifest.json")
        if manifest is None:
            return 0
        total = 0
        for key in objects_of(manifest):
            with contextlib.suppress(OSError):
                total += os.stat(self.objects.path(base, key)).st_size
        return total + self.own_bytes(base, snapshot_id)

    def materialize(self, snapshot_id: str, dest: Path) -> None:
        """Recreate the snapshot's image files in `dest`, verifying every chunk. Raises
        StoreError when the snapshot is missing or damaged (see remove())."""
        check_id(snapshot_id)
        base = self.root.reader()
        manifest = self.load(base, snapshot_id, "manifest.json") if base is not None else None
        if base is None or manifest is None:
            raise StoreError(f"no snapshot {snapshot_id} in the store")
        with self.root.shared():
            materialize.write_files(self.objects, base, snapshot_id, manifest, dest)
