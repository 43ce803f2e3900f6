"""Chunks into image files: recreate a snapshot's files from its manifest, in parallel,
verifying every chunk.

Small files are written whole by one worker task each; a file of more than a task's
worth of chunks is opened once, sized, and written by several tasks at their offsets
(every chunk before a file's last is exactly the manifest's chunk_size bytes).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tonic.store.chunking import BATCH_BYTES, CHUNK, WORKERS
from tonic.store.fileio import pwrite_all, write_all
from tonic.store.layout import StoreError
from tonic.store.objects import Objects

_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW


def dest_path(dest: Path, name: str, snapshot_id: str) -> Path:
    """Where a manifest's file `name` goes under `dest` (never outside it)."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise StoreError(f"snapshot {snapshot_id} is damaged: file name {name!r}")
    return dest.joinpath(*parts)


class _Writer:
    """One snapshot's trip out of the store: this thread plans, the pool writes."""

    def __init__(
        self, objects: Objects, base: Path, snapshot_id: str, step: int, pool: ThreadPoolExecutor
    ) -> None:
        self.objects, self.base, self.snapshot_id = objects, base, snapshot_id
        self.step, self.pool = step, pool
        self.batch = max(1, BATCH_BYTES // step)
        self.futures: list[Future[None]] = []
        self.open_fds: list[tuple[int, Path, int, int, list[Future[int]]]] = []

    def _damaged(self, what: str) -> StoreError:
        return StoreError(f"snapshot {self.snapshot_id} is damaged: {what}")

    def _chunk(self, key: str) -> bytes:
        data = self.objects.read(self.base, key)
        if data is None:
            raise self._damaged(f"chunk {key}")
        return data

    def _whole(self, path: Path, keys: list[str], size: int, mode: int) -> None:
        parts = [self._chunk(k) for k in keys]
        if sum(len(p) for p in parts) != size:
            raise self._damaged(f"size of {path.name}")
        fd = os.open(path, _WRITE, 0o600)
        try:
            for p in parts:
                write_all(fd, p)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def _ranged(self, fd: int, keys: list[str], offset: int) -> int:
        for k in keys:
            data = self._chunk(k)
            pwrite_all(fd, data, offset)
            offset += len(data)
        return offset

    def add(self, dest: Path, name: str, entry: object) -> None:
        """Send the writing of one manifest entry to the pool."""
        path = dest_path(dest, name, self.snapshot_id)
        try:
            if not isinstance(entry, dict):
                raise TypeError(entry)
            size, mode = int(entry["size"]), int(entry["mode"]) & 0o777
            keys = [str(k) for k in entry["chunks"]]
        except (KeyError, TypeError, ValueError) as err:
            raise self._damaged(name) from err
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if len(keys) <= self.batch:
            self.futures.append(self.pool.submit(self._whole, path, keys, size, mode))
            return
        fd = os.open(path, _WRITE, 0o600)
        os.ftruncate(fd, size)
        parts: list[Future[int]] = []
        self.open_fds.append((fd, path, size, mode, parts))
        for i in range(0, len(keys), self.batch):
            # chunks before the last are exactly chunk_size bytes
            keys_i = keys[i : i + self.batch]
            parts.append(self.pool.submit(self._ranged, fd, keys_i, i * self.step))

    def finish(self) -> None:
        """Wait for every task; check the sizes of the files written in parts."""
        for fut in self.futures:
            fut.result()
        for fd, path, size, mode, parts in self.open_fds:
            ends = [p.result() for p in parts]
            if ends[-1] != size:
                raise self._damaged(f"size of {path.name}")
            os.fchmod(fd, mode)

    def close(self) -> None:
        """Cancel what has not started, wait for the rest, close the files."""
        for fut in self.futures:
            fut.cancel()
        for *_, parts in self.open_fds:
            for p in parts:
                p.cancel()
        self.pool.shutdown(wait=True)
        for fd, *_ in self.open_fds:
            os.close(fd)


def write_files(
    objects: Objects, base: Path, snapshot_id: str, manifest: dict[str, object], dest: Path
) -> None:
    """Recreate the manifest's files in `dest`. Raises StoreError when the manifest or
    one of its chunks is damaged (the caller holds the store's shared lock)."""
    files, step = manifest.get("files"), manifest.get("chunk_size", CHUNK)
    if not isinstance(files, dict) or not isinstance(step, int) or step <= 0:
        raise StoreError(f"snapshot {snapshot_id} is damaged: no file list")
    dest = Path(dest)
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="tonic-store") as pool:
        writer = _Writer(objects, base, snapshot_id, step, pool)
        try:
            for name, entry in files.items():
                writer.add(dest, str(name), entry)
            writer.finish()
        finally:
            writer.close()
