"""The snapshot store: content-addressed, deduplicated, compressed, crash-safe.

CRIU images hold process memory (secrets included), so everything in the store is
private to the user: directories 0700, files 0600. The parts, one job each:

    layout.py       the cache root's folders, the private-root check, locks, staging
    objects.py      chunks and blobs: put, read, compression
    chunking.py     image files into chunks (ingest's parallel reader)
    materialize.py  chunks into image files (a restore's parallel writer)
    snapshots.py    ingest, publish, find, info, list, materialize, remove
    records.py      other parts' JSON records, each declaring the objects it needs
    gc.py           stats, gc (what is kept and why), clear
    memo.py         private_file, recall, remember
    hot.py          the newest snapshots' images, kept unpacked
    ingest.py       the detached worker that stores a run's dumps
    facade.py       Store, over all of them

`Store` is what the rest of tonic uses; this module re-exports it and the other public
names.
"""

from __future__ import annotations

from tonic.store.chunking import CHUNK
from tonic.store.facade import Store
from tonic.store.gc import BLOB_GRACE, TMP_AGE, GcReport, StoreStats
from tonic.store.layout import (
    FILES,
    RUNS,
    CacheFullError,
    StoreError,
    default_root,
    is_full_error,
)
from tonic.store.memo import private_file, recall, remember
from tonic.store.objects import RAW, ZLIB, is_id
from tonic.store.records import DamagedRecord, seal, unseal
from tonic.store.snapshots import SnapshotInfo

__all__ = [
    "BLOB_GRACE",
    "CHUNK",
    "FILES",
    "RAW",
    "RUNS",
    "TMP_AGE",
    "ZLIB",
    "CacheFullError",
    "DamagedRecord",
    "GcReport",
    "SnapshotInfo",
    "Store",
    "StoreError",
    "StoreStats",
    "default_root",
    "is_full_error",
    "is_id",
    "private_file",
    "recall",
    "remember",
    "seal",
    "unseal",
]
