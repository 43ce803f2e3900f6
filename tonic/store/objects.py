"""Objects: the store's chunks (of snapshots' image files) and blobs (put_blob).

An object is stored once under objects/ab/<sha256 of its raw bytes>: one header byte
(RAW or ZLIB) and then the bytes, compressed with zlib level 1 when that saves at least
MIN_SAVING. It is written under tmp/ and renamed into place, so a reader sees a whole
object or none, and every read checks the content against its id.

An object's mtime tells gc its age: put_blob sets it to now, because blobs are usually
stored before the record that refers to them, outside any lock (gc spares recent ones);
chunks written by ingest get mtime 0, so a killed ingest's chunks are collected at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import zlib
from pathlib import Path

from tonic.store.fileio import write_all
from tonic.store.layout import OBJECTS, Root, StoreError

LEVEL = 1  # zlib level
MIN_SAVING = 0.10  # store raw unless compression saves at least this fraction
SAMPLE_RATIO = 0.97  # chunks whose samples compress worse than this are stored raw
RAW, ZLIB = b"\x00", b"\x01"

HEX = re.compile(r"[0-9a-f]{64}")


def digest(data: bytes | memoryview) -> str:
    """An object's id: the sha256 hex of its raw bytes."""
    return hashlib.sha256(data).hexdigest()


def is_id(key: object) -> bool:
    return isinstance(key, str) and HEX.fullmatch(key) is not None


def worth_compressing(data: bytes | memoryview) -> bool:
    """False when four 1 KiB samples spread over `data` do not compress at all (random
    or already compressed bytes): zlib would spend about 1 ms per 64 KiB to find out."""
    if len(data) < 16 * 1024:
        return True
    step = len(data) // 4
    sample = b"".join(data[i * step : i * step + 1024] for i in range(4))
    return len(zlib.compress(sample, LEVEL)) < len(sample) * SAMPLE_RATIO


def _encode(data: bytes | memoryview) -> bytes:
    """The header byte and the stored form of `data`."""
    if worth_compressing(data):
        packed = zlib.compress(data, LEVEL)
        if len(packed) <= len(data) * (1 - MIN_SAVING):
            return ZLIB + packed
    return RAW + data


def _decode(body: bytes) -> bytes | None:
    head, rest = body[:1], memoryview(body)[1:]
    try:
        if head == ZLIB:
            return zlib.decompress(rest)
        if head == RAW:
            return bytes(rest)
    except zlib.error:
        pass
    return None


class Objects:
    """The object store under `root`'s objects/ folder."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self._dirs: set[str] = set()  # objects/xx directories known to exist

    def forget(self) -> None:
        """objects/ may be gone (clear()): make its subfolders again when needed."""
        self._dirs.clear()

    @staticmethod
    def path(base: Path, key: str) -> Path:
        return base / OBJECTS / key[:2] / key

    def put(
        self, base: Path, key: str, data: bytes | memoryview, *, durable: bool, fresh: bool
    ) -> int:
        """Store `data` under `key` unless it exists; the bytes written (0 if it existed).
        `fresh` (blobs) sets the mtime to now, which protects it from gc for a while;
        otherwise (chunks) a new object gets mtime 0."""
        path = self.path(base, key)
        try:
            if fresh:
                os.utime(path)
            else:
                os.stat(path)
            return 0
        except FileNotFoundError:
            pass
        body = _encode(data)
        prefix = key[:2]
        if prefix not in self._dirs:
            (base / OBJECTS / prefix).mkdir(mode=0o700, exist_ok=True)
            self._dirs.add(prefix)
        tmp = self.root.tmp_name(base, "obj")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                write_all(fd, body)
                if durable:
                    os.fsync(fd)
                if not fresh:
                    os.utime(fd, (0, 0))
            finally:
                os.close(fd)
            try:
                os.rename(tmp, path)
            except FileNotFoundError:  # objects/xx was removed by a clear() since we saw it
                path.parent.mkdir(mode=0o700, exist_ok=True)
                os.rename(tmp, path)
        except BaseException:  # a full disk: no half-written object stays behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return len(body)

    def put_chunks(self, base: Path, pieces: list[bytes | memoryview], durable: bool) -> list[str]:
        """Store each piece as a chunk (mtime 0); their ids, in order."""
        keys = []
        for piece in pieces:
            key = digest(piece)
            self.put(base, key, piece, durable=durable, fresh=False)
            keys.append(key)
        return keys

    def read(self, base: Path, key: str) -> bytes | None:
        """The object's raw bytes, or None when it is missing or damaged. A damaged
        object is deleted, so that the next ingest or put_blob of its content stores it
        again instead of deduplicating against it."""
        path = self.path(base, key)
        try:
            with open(path, "rb") as f:
                body = f.read()
        except FileNotFoundError:
            return None
        data = _decode(body)
        if data is None or digest(data) != key:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return data

    def sizes(self, base: Path) -> dict[str, tuple[int, float]]:
        """Every object's id -> (size, mtime)."""
        sizes: dict[str, tuple[int, float]] = {}
        try:
            prefixes = list(os.scandir(base / OBJECTS))
        except OSError:
            return sizes
        for prefix in prefixes:
            if not prefix.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError), os.scandir(prefix.path) as it:
                for entry in it:
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        sizes[entry.name] = (st.st_size, st.st_mtime)
        return sizes

    # -- blobs --------------------------------------------------------------------------

    def put_blob(self, data: bytes, *, durable: bool = False) -> str:
        """Store `data`; returns its id (sha256 hex of `data`). gc keeps it while a
        snapshot's meta["blobs"] or a record's "blobs" names it, and for BLOB_GRACE
        seconds (gc.py) after the last put_blob of it."""
        key = digest(data)
        base = self.root.ensure()
        with self.root.shared():
            self.put(base, key, data, durable=durable, fresh=True)
        return key

    def has_blob(self, key: str) -> bool:
        """True when a blob (or any object) of this id is in the store."""
        base = self.root.reader()
        if base is None or not HEX.fullmatch(key):
            return False
        return self.path(base, key).is_file()

    def get_blob(self, key: str) -> bytes:
        base = self.root.reader()
        if not is_id(key):
            raise StoreError(f"invalid blob id {key!r}")
        data = self.read(base, key) if base is not None else None
        if data is None:
            raise StoreError(f"blob {key} is missing or damaged")
        return data
