"""Store: the one object the rest of tonic uses, over the store's parts (layout.py,
objects.py, snapshots.py, records.py, gc.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from tonic.store import gc as collect
from tonic.store.chunking import CHUNK
from tonic.store.gc import BLOB_GRACE, TMP_AGE, GcReport, StoreStats
from tonic.store.layout import Root, StoreError, default_root, disk_full, is_full_error
from tonic.store.objects import Objects
from tonic.store.records import Records
from tonic.store.snapshots import SnapshotInfo, Snapshots


class Store:
    """A snapshot store rooted at `root` (default: default_root()). Nothing is created
    on disk until something is written."""

    def __init__(self, root: Path | None = None, *, chunk_size: int = CHUNK) -> None:
        if chunk_size < 512 or chunk_size % 512:
            raise ValueError(f"chunk_size {chunk_size} is not a positive multiple of 512")
        self.root = Path(root) if root is not None else default_root()
        self._root = Root(self.root)
        self._objects = Objects(self._root)
        self._records = Records(self._root)
        # chunk_size is that of new snapshots; each manifest records its own
        self._snapshots = Snapshots(self._root, self._objects, chunk_size)
        self.filled = False  # a write of this process found the cache's disk full

    def full(self) -> bool:
        """Whether the cache's disk is full (layout.disk_full), or a write found it so."""
        return self.filled or disk_full(self.root)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write that may find the disk full: remembered (filled), and raised on."""
        try:
            yield
        except (OSError, StoreError) as err:
            if is_full_error(err):
                self.filled = True
            raise

    def sweep(self) -> int:
        """Remove the staging leftovers of processes that are gone (a killed ingest
        worker's dumps, a killed run's scratch); best effort. How many went."""
        try:
            base = self._root.reader()
            return collect.sweep(base) if base is not None else 0
        except (OSError, StoreError):
            return 0

    @property
    def chunk_size(self) -> int:
        return self._snapshots.chunk_size

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock for callers (e.g. one per notebook), held while in `with`."""
        return self._root.lock(name)

    # -- blobs (objects.py) -------------------------------------------------------------

    def put_blob(self, data: bytes, *, durable: bool = False) -> str:
        """Store `data` in the object store; returns its id (sha256 hex of `data`).
        gc keeps it while a snapshot's meta["blobs"] (or a record's "blobs") names it,
        and for BLOB_GRACE seconds after the last put_blob of it."""
        with self._writing():
            return self._objects.put_blob(data, durable=durable)

    def has_blob(self, key: str) -> bool:
        """True when a blob (or any object) of this id is in the store."""
        return self._objects.has_blob(key)

    def get_blob(self, key: str) -> bytes:
        return self._objects.get_blob(key)

    # -- records (records.py) -----------------------------------------------------------

    def put_record(
        self, kind: str, name: str, doc: Mapping[str, object], *, blobs: Iterable[str]
    ) -> None:
        """Write record `name` of `kind` (layout.RUNS, layout.FILES) atomically, with
        its "blobs" field set to `blobs`: the objects gc keeps for it."""
        with self._writing():
            self._records.put(kind, name, doc, blobs)

    def get_record(self, kind: str, name: str) -> dict[str, object] | None:
        """Record `name` of `kind`, None when there is none; DamagedRecord when it is
        unreadable or its checksum is wrong."""
        return self._records.get(kind, name)

    # -- snapshots (snapshots.py) -------------------------------------------------------

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
        with self._writing():
            return self._snapshots.ingest(snapshot_id, tag, image_dir, meta, durable=durable)

    def info(self, snapshot_id: str) -> SnapshotInfo | None:
        return self._snapshots.info(snapshot_id)

    def find(self, tag: str) -> list[SnapshotInfo]:
        """The snapshots published with `tag`, newest first."""
        return self._snapshots.find(tag)

    def snapshots(self) -> list[SnapshotInfo]:
        """Every readable snapshot, newest first."""
        return self._snapshots.every()

    def stored_bytes(self, snapshot_id: str) -> int:
        """On-disk bytes of the distinct objects the snapshot refers to (objects shared
        with other snapshots counted in full), plus its manifest."""
        return self._snapshots.stored_bytes(snapshot_id)

    def materialize(self, snapshot_id: str, dest: Path) -> None:
        """Recreate the snapshot's image files in `dest`, verifying every chunk. Raises
        StoreError when the snapshot is missing or damaged (see remove())."""
        with self._writing():
            self._snapshots.materialize(snapshot_id, dest)

    def touch(self, snapshot_id: str) -> None:
        """Mark a snapshot used now (a restore): gc --max-size drops the least recently
        used first."""
        self._snapshots.touch(snapshot_id)

    def last_used(self, info: SnapshotInfo) -> float:
        return self._snapshots.last_used(info)

    def remove(self, snapshot_id: str) -> bool:
        """Remove one snapshot (e.g. a damaged one); its objects go at the next gc.
        False when there was no such snapshot."""
        return self._snapshots.remove(snapshot_id)

    # -- accounting, gc (gc.py) ---------------------------------------------------------

    def stats(self) -> StoreStats:
        return collect.stats(self._root, self._objects, self._snapshots)

    def gc(
        self,
        keep: Callable[[SnapshotInfo], bool] | None = None,
        max_bytes: int | None = None,
        *,
        blob_grace: float = BLOB_GRACE,
        tmp_age: float = TMP_AGE,
        dry_run: bool = False,
    ) -> GcReport:
        """Remove the snapshots `keep` rejects, then the oldest until the store holds at
        most `max_bytes`; then unreferenced objects (sparing blobs put within
        `blob_grace` seconds), staging leftovers and dangling tag links. With `dry_run`,
        only say what would go."""
        return collect.gc(
            self._root,
            self._objects,
            self._snapshots,
            keep,
            max_bytes,
            blob_grace=blob_grace,
            tmp_age=tmp_age,
            dry_run=dry_run,
        )

    def clear(self) -> None:
        """Remove every snapshot, object, staging entry and record (the store's own
        directories only; anything else under the root is left alone, as are lock files,
        which other processes may hold)."""
        collect.clear(self._root, self._objects)
