"""A snapshot's image files for a restore: the unpacked copy (store/hot.py), checked
while the backend restores it, else the dump itself while the ingest worker stores it
(store/landing.py), else recreated from the store's checked chunks."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tonic.errors import EngineError
from tonic.store import Store, StoreError, hot, landing
from tonic.store.layout import TMP, is_full_error, staging_name
from tonic.timetravel.choose import Choice


def staging(store: Store) -> Path:
    """Where images are written before they enter the store (the same filesystem)."""
    tmp = store.root / TMP
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    return tmp


class DamagedImages(EngineError):
    """The unpacked copy of a snapshot's images failed its check (what is damaged)."""


@dataclass
class Images:
    """A snapshot's image files, not to be written to, and a private scratch folder.

    `check`, for an unpacked copy: waits for its check, which runs while the backend
    restores (CRIU leaves the tree stopped until it passes), and raises DamagedImages
    if it fails; nothing to wait for with the store's copy, whose chunks were checked
    as they were read."""

    files: Path
    scratch: Path
    pending: Future[str | None] | None = None
    waited: float = 0.0  # seconds the restore waited for the check
    source: str = "store"  # hot: the unpacked copy; dump: a landed dump; store: recreated

    def failed(self) -> bool:
        """Whether the check is done and failed (a restore under way can stop)."""
        return (
            self.pending is not None and self.pending.done() and self.pending.result() is not None
        )

    def check(self) -> None:
        """Wait for the check (if any)."""
        if self.pending is None:
            return
        started = time.monotonic()
        damaged = self.pending.result()
        self.waited += time.monotonic() - started
        if damaged is not None:
            raise DamagedImages(damaged)


@contextlib.contextmanager
def images(store: Store, choice: Choice, unpacked: bool = True) -> Iterator[Images]:
    """The snapshot's image files: kept unpacked (store/hot.py), checked while they are
    restored, or (not `unpacked`, or none kept) recreated from the store in the scratch
    folder, which is removed afterwards."""
    staging(store)
    store.touch(choice.snapshot_id)  # used: the last that gc --max-size drops
    work = staging_name(store.root, "restore")  # this run's: gone with it if it is killed
    checking = None
    try:
        work.mkdir(mode=0o700)
        found = hot.kept(store.root, choice.snapshot_id) if unpacked else None
        if found is not None:
            checking = ThreadPoolExecutor(1, thread_name_prefix="tonic-check")
            pending = checking.submit(hot.check, store.root, choice.snapshot_id)
            try:
                yield Images(found, work, pending, source="hot")
            finally:
                if pending.result() is not None:  # once nothing reads it any more
                    hot.drop(store.root, choice.snapshot_id)
            return
        with landing.using(store.root, choice.snapshot_id) as landed:
            if landed is not None:  # not stored yet: the dump itself
                yield Images(landed, work, source="dump")
                return
        found = work / "images"
        try:
            store.materialize(choice.snapshot_id, found)
        except StoreError as err:
            if not is_full_error(err):
                store.remove(choice.snapshot_id)
            raise
        yield Images(found, work)
    finally:
        if checking is not None:
            checking.shutdown(wait=True)
        shutil.rmtree(work, ignore_errors=True)
