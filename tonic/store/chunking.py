"""Image files into chunks: read, cut, hash, compress and store every regular file of a
directory, in parallel.

The workers hash, compress and write (hashlib and zlib release the GIL) while the
reading thread reads ahead into a few reused buffers (fresh buffers would cost a page
fault per 4 KiB). Files up to one chunk are batched, many to a worker task; larger
files are cut into chunks of the store's chunk size, a buffer's worth to a task.
"""

from __future__ import annotations

import io
import os
import stat
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tonic.store.fileio import fill
from tonic.store.layout import StoreError
from tonic.store.objects import Objects

CHUNK = 64 * 1024  # default fixed chunk size of large files (a multiple of the page size)
BATCH_BYTES = 2 << 20  # bytes per worker task
WORKERS = 2
AHEAD = 3 * WORKERS  # tasks (and buffers) in flight at most


@dataclass
class FileEntry:
    """One image file of a snapshot, as its manifest lists it."""

    name: str
    size: int
    mode: int
    chunks: list[str]


def walk(root: Path) -> Iterable[tuple[str, Path]]:
    """(relative name, path) of every entry under root that is not a directory or
    symlink, sorted; the caller skips what is not a regular file."""
    stack = [(root, "")]
    out: list[tuple[str, Path]] = []
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as err:
            raise StoreError(f"cannot read {folder}: {err}") from err
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if entry.is_symlink():
                continue
            if entry.is_dir():
                stack.append((Path(entry.path), rel + "/"))
            elif entry.is_file():
                out.append((rel, Path(entry.path)))
    return sorted(out)


class _Pipeline:
    """One directory's trip into the store: this thread reads, the pool stores."""

    def __init__(
        self,
        objects: Objects,
        base: Path,
        pool: ThreadPoolExecutor,
        chunk_size: int,
        durable: bool,
    ) -> None:
        self.objects, self.base, self.pool = objects, base, pool
        self.size, self.durable = chunk_size, durable
        self.batch = max(1, BATCH_BYTES // chunk_size)  # chunks per worker task
        self.files: list[FileEntry] = []
        # (entries, each, future): with `each`, one key per entry (a batch of small
        # files); else all keys belong to the one entry
        self.jobs: list[tuple[list[FileEntry], bool, Future[list[str]]]] = []
        self.pending: deque[tuple[Future[list[str]], bytearray | None]] = deque()
        self.free: list[bytearray] = []
        self.buffers = 0
        self.small: list[bytes] = []
        self.small_files: list[FileEntry] = []

    def _wait_oldest(self) -> None:
        fut, buf = self.pending.popleft()
        fut.result()
        if buf is not None:
            self.free.append(buf)

    def _buffer(self) -> bytearray:
        if not self.free and self.buffers < AHEAD:
            self.buffers += 1
            return bytearray(self.batch * self.size)
        while not self.free:
            self._wait_oldest()
        return self.free.pop()

    def _submit(
        self,
        entries: list[FileEntry],
        each: bool,
        pieces: list[bytes | memoryview],
        buf: bytearray | None,
    ) -> None:
        while len(self.pending) >= AHEAD:
            self._wait_oldest()
        fut = self.pool.submit(self.objects.put_chunks, self.base, pieces, self.durable)
        self.pending.append((fut, buf))
        self.jobs.append((entries, each, fut))

    def flush_small(self) -> None:
        if self.small:
            self._submit(self.small_files, True, list(self.small), None)
        self.small, self.small_files = [], []

    def add(self, rel: str, path: Path) -> None:
        """Read one file (skipped unless regular) and send its chunks to the pool."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err}") from err
        with open(fd, "rb", buffering=0, closefd=True) as fh:
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return
                entry = FileEntry(rel, 0, stat.S_IMODE(st.st_mode), [])
                self.files.append(entry)
                if st.st_size <= self.size:
                    self._add_small(entry, fh.readall())
                else:
                    self._add_large(entry, fh)
            except OSError as err:
                raise StoreError(f"cannot read {path}: {err}") from err

    def _add_small(self, entry: FileEntry, data: bytes) -> None:
        entry.size = len(data)
        if data:
            self.small.append(data)
            self.small_files.append(entry)
            if len(self.small) >= self.batch:
                self.flush_small()

    def _add_large(self, entry: FileEntry, fh: io.FileIO) -> None:
        size = self.size
        while True:
            buf = self._buffer()
            view = memoryview(buf)
            n = fill(fh, view)
            if n == 0:
                self.free.append(buf)
                break
            entry.size += n
            pieces = [view[i : min(i + size, n)] for i in range(0, n, size)]
            self._submit([entry], False, list(pieces), buf)
            if n < len(buf):
                break

    def collect(self) -> list[FileEntry]:
        """Wait for every task; the files with their chunks' ids."""
        self.flush_small()
        for entries, each, fut in self.jobs:
            keys = fut.result()
            if each:
                for entry, key in zip(entries, keys, strict=True):
                    entry.chunks.append(key)
            else:
                entries[0].chunks.extend(keys)
        return self.files


def store_files(
    objects: Objects, base: Path, image_dir: Path, chunk_size: int, durable: bool
) -> list[FileEntry]:
    """Chunk, hash and store every regular file under `image_dir`, sorted by name."""
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="tonic-store") as pool:
        pipeline = _Pipeline(objects, base, pool, chunk_size, durable)
        for rel, path in walk(image_dir):
            pipeline.add(rel, path)
        return pipeline.collect()
