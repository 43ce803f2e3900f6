"""The snapshot store: content-addressed, deduplicated, compressed, crash-safe.

CRIU images hold process memory (secrets included), so everything here is private to
the user: directories 0700, files 0600. Layout under the root:

    objects/ab/<sha256>        chunks and blobs; key = sha256 of the raw bytes; one header
                               byte says how the rest is stored (raw or zlib level 1)
    snapshots/<id>/manifest.json   {"id", "tag", "created", "meta", "logical_bytes",
                                   "nfiles", "chunk_size", "files": {relative name:
                                   {"size", "mode", "chunks": [sha256, ...]}}}
    snapshots/<id>/info.json       the same without "files" (cheap to list 2000 of them)
    index/<sha256(tag)[:32]>/<id>  empty file per snapshot of a tag, for find(tag)
    tmp/                       staging; the store's own entries are named "ingest-*"
    locks/                     flock files: "store.lock" (gc exclusive, everyone else
                               shared) and one per lock(name)

Crash safety: objects are written under tmp/ and renamed into place; a snapshot is a
directory staged under tmp/ and published by one rename into snapshots/, so a reader
sees a whole snapshot or none. A killed ingest leaves only tmp entries and objects no
snapshot refers to, both of which gc removes.

Blobs (put_blob) are usually stored before the record that refers to them, outside any
lock, so gc spares unreferenced objects whose mtime is recent (put_blob sets it to now);
objects written by ingest get mtime 0, so a killed ingest's chunks are collected at once.
Besides snapshot manifests (chunks and meta["blobs"]), gc keeps every object id found in
the JSON records other modules keep under runs/ and files/.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tonic import settings
from tonic.errors import TonicError

CHUNK = 64 * 1024  # default fixed chunk size of large files (a multiple of the page size)
BATCH_BYTES = 2 << 20  # bytes per worker task
WORKERS = 2
LEVEL = 1  # zlib level
MIN_SAVING = 0.10  # store raw unless compression saves at least this fraction
SAMPLE_RATIO = 0.97  # chunks whose samples compress worse than this are stored raw
RAW, ZLIB = b"\x00", b"\x01"
TMP_AGE = 3600.0  # foreign staging entries older than this are stale
BLOB_GRACE = 86400.0  # unreferenced objects put this recently are kept by gc

LAYOUT = ("objects", "snapshots", "index", "tmp", "locks")
RECORDS = ("runs", "files")  # other modules' JSON records: their object ids are gc roots
OWN_TMP = "ingest-"
STORE_LOCK = "store.lock"

_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_HEX = re.compile(r"[0-9a-f]{64}")


class StoreError(TonicError):
    """The snapshot store cannot be used, or a snapshot or blob is missing or damaged."""


def default_root() -> Path:
    """$TONIC_CACHE, else $XDG_CACHE_HOME/tonic, else ~/.cache/tonic (tonic.settings)."""
    return settings.current().cache


def private_file(name: str) -> Path:
    """A small file of tonic's own memos in the private cache root (created 0700)."""
    root = default_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = root / "memo"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory / name


def recall(name: str, stamp: str, max_age: float | None = None) -> str | None:
    """What `remember(name, stamp, ...)` kept, if the stamp is the same (and the memo is
    younger than `max_age` seconds); None otherwise."""
    path = private_file(name)
    try:
        memo = json.loads(path.read_text())
        if max_age is not None and time.time() - path.stat().st_mtime > max_age:
            return None
    except (OSError, ValueError):
        return None
    value = memo.get(stamp) if isinstance(memo, dict) else None
    return value if isinstance(value, str) else None


def remember(name: str, stamp: str, value: str) -> None:
    """Keep one memo under `name` (the answer of a slow probe, keyed by what it depends
    on). Best effort: a memo that cannot be written is asked for again next time."""
    with contextlib.suppress(OSError):
        fd = os.open(
            private_file(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600
        )
        with os.fdopen(fd, "w") as f:
            json.dump({stamp: value}, f)


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    tag: str
    created: float
    meta: dict[str, object]
    logical_bytes: int  # sum of the image files' sizes
    files: int = 0  # number of image files


@dataclass(frozen=True)
class StoreStats:
    snapshots: int
    objects: int
    stored_bytes: int  # objects and manifests, as on disk (apparent sizes)
    logical_bytes: int  # sum of all snapshots' logical_bytes


@dataclass
class GcReport:
    snapshots_removed: int = 0
    objects_removed: int = 0
    bytes_freed: int = 0
    tmp_removed: int = 0
    links_removed: int = 0
    damaged_removed: int = 0
    removed_ids: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        def n(count: int, noun: str) -> str:
            return f"{count} {noun}{'' if count == 1 else 's'}"

        text = (
            f"removed {n(self.snapshots_removed, 'snapshot')} and "
            f"{n(self.objects_removed, 'object')} ({self.bytes_freed / (1 << 20):.1f} MiB freed)"
        )
        if self.damaged_removed:
            text += f", {n(self.damaged_removed, 'damaged snapshot')}"
        if self.tmp_removed:
            text += f", {n(self.tmp_removed, 'staging leftover')}"
        if self.links_removed:
            text += f", {n(self.links_removed, 'dangling tag link')}"
        return text


@dataclass
class _File:
    name: str
    size: int
    mode: int
    chunks: list[str]


def _digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _tag_dir(tag: str) -> str:
    return hashlib.sha256(tag.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _check_id(snapshot_id: str) -> None:
    if not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id):
        raise StoreError(f"invalid snapshot id {snapshot_id!r}")


def _rmtree(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)


def _hexes(value: object, out: set[str]) -> None:
    """Collect every sha256-looking string inside a JSON value."""
    if isinstance(value, str):
        if len(value) == 64 and _HEX.fullmatch(value):
            out.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _hexes(v, out)
    elif isinstance(value, list):
        for v in value:
            _hexes(v, out)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fill(fh: io.FileIO, view: memoryview) -> int:
    """Read into `view` until it is full or the file ends; the bytes read."""
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


class Store:
    """A snapshot store rooted at `root` (default: default_root()). Nothing is created
    on disk until something is written."""

    def __init__(self, root: Path | None = None, *, chunk_size: int = CHUNK) -> None:
        if chunk_size < 512 or chunk_size % 512:
            raise ValueError(f"chunk_size {chunk_size} is not a positive multiple of 512")
        self.root = Path(root) if root is not None else default_root()
        self.chunk_size = chunk_size  # of new snapshots; each manifest records its own
        self._batch = max(1, BATCH_BYTES // chunk_size)  # chunks per worker task
        self._base: Path | None = None  # the checked real directory
        self._ready = False
        self._dirs: set[str] = set()  # objects/xx directories known to exist
        self._seq = 0

    # -- paths, permissions -------------------------------------------------------------

    def _check_root(self, *, create: bool) -> Path | None:
        """The root's real path once it is checked to be a private directory of ours;
        None when it does not exist and `create` is false."""
        if self._base is not None:
            return self._base
        uid = os.getuid()
        try:
            st = os.lstat(self.root)
        except FileNotFoundError:
            if not create:
                return None
            try:
                self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.root.mkdir(mode=0o700, exist_ok=True)
                st = os.lstat(self.root)
            except OSError as err:
                raise StoreError(f"cannot create the snapshot store {self.root}: {err}") from err
        except OSError as err:
            raise StoreError(f"cannot use the snapshot store {self.root}: {err}") from err
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid != uid:
                raise StoreError(
                    f"the snapshot store {self.root} is a symlink owned by uid {st.st_uid}; "
                    "refusing to follow it"
                )
            try:
                st = os.stat(self.root)
            except OSError as err:
                raise StoreError(f"cannot use the snapshot store {self.root}: {err}") from err
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"the snapshot store {self.root} is not a directory")
        if st.st_uid != uid:
            raise StoreError(
                f"the snapshot store {self.root} is owned by uid {st.st_uid}, not by you "
                f"(uid {uid}); refusing to use it"
            )
        real = Path(os.path.realpath(self.root))
        if stat.S_IMODE(st.st_mode) & 0o077:
            try:
                os.chmod(real, 0o700)
            except OSError as err:
                raise StoreError(f"cannot make {self.root} private: {err}") from err
        self._base = real
        return real

    def _ensure(self) -> Path:
        """The root, with the layout created and private (cheap to call again: another
        process may have cleared the store meanwhile)."""
        base = self._check_root(create=True)
        assert base is not None
        if self._ready and not base.is_dir():
            self._base, self._ready = None, False  # the root itself went away
            base = self._check_root(create=True)
            assert base is not None
        for name in LAYOUT:
            path = base / name
            try:
                path.mkdir(mode=0o700)
                continue
            except FileExistsError:
                if self._ready:
                    continue
            except OSError as err:
                raise StoreError(f"cannot create {path}: {err}") from err
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                raise StoreError(f"{path} is not a directory")
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(path, 0o700)
        self._ready = True
        return base

    def _reader(self) -> Path | None:
        """The root for reading, or None when the store does not exist yet."""
        return self._check_root(create=False)

    def _object_path(self, base: Path, key: str) -> Path:
        return base / "objects" / key[:2] / key

    def _tmp_name(self, base: Path, kind: str) -> Path:
        self._seq += 1
        token = secrets.token_hex(4)
        return base / "tmp" / f"{OWN_TMP}{kind}-{os.getpid()}-{self._seq}-{token}"

    # -- locks --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, filename: str, op: int) -> Iterator[None]:
        base = self._ensure()
        path = base / "locks" / filename
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, op)
            yield
        finally:
            os.close(fd)  # releases the lock

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock for callers (e.g. one per notebook), held while in `with`."""
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self._flock(digest, fcntl.LOCK_EX)

    def _shared(self) -> contextlib.AbstractContextManager[None]:
        return self._flock(STORE_LOCK, fcntl.LOCK_SH)

    def _exclusive(self) -> contextlib.AbstractContextManager[None]:
        return self._flock(STORE_LOCK, fcntl.LOCK_EX)

    # -- objects ------------------------------------------------------------------------

    def _put_object(
        self, base: Path, key: str, data: bytes | memoryview, *, durable: bool, fresh: bool
    ) -> int:
        """Store `data` under `key` unless it exists; the bytes written (0 if it existed).
        `fresh` (blobs) sets the mtime to now, which protects it from gc for a while;
        otherwise (chunks) a new object gets mtime 0."""
        path = self._object_path(base, key)
        try:
            if fresh:
                os.utime(path)
            else:
                os.stat(path)
            return 0
        except FileNotFoundError:
            pass
        body = RAW + data
        if _worth_compressing(data):
            packed = zlib.compress(data, LEVEL)
            if len(packed) <= len(data) * (1 - MIN_SAVING):
                body = ZLIB + packed
        prefix = key[:2]
        if prefix not in self._dirs:
            (base / "objects" / prefix).mkdir(mode=0o700, exist_ok=True)
            self._dirs.add(prefix)
        tmp = self._tmp_name(base, "obj")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, body)
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
        return len(body)

    def _read_object(self, base: Path, key: str) -> bytes | None:
        """The object's raw bytes, or None when it is missing or damaged. A damaged
        object is deleted, so that the next ingest or put_blob of its content stores it
        again instead of deduplicating against it."""
        path = self._object_path(base, key)
        try:
            with open(path, "rb") as f:
                body = f.read()
        except FileNotFoundError:
            return None
        head, rest = body[:1], memoryview(body)[1:]
        data: bytes | None = None
        try:
            if head == ZLIB:
                data = zlib.decompress(rest)
            elif head == RAW:
                data = bytes(rest)
        except zlib.error:
            pass
        if data is None or _digest(data) != key:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return data

    def put_blob(self, data: bytes, *, durable: bool = False) -> str:
        """Store `data` in the object store; returns its id (sha256 hex of `data`).
        gc keeps it while a snapshot's meta["blobs"] (or a record under runs/ or files/)
        names it, and for BLOB_GRACE seconds after the last put_blob of it."""
        key = _digest(data)
        base = self._ensure()
        with self._shared():
            self._put_object(base, key, data, durable=durable, fresh=True)
        return key

    def has_blob(self, key: str) -> bool:
        """True when a blob (or any object) of this id is in the store."""
        base = self._reader()
        if base is None or not _HEX.fullmatch(key):
            return False
        return self._object_path(base, key).is_file()

    def get_blob(self, key: str) -> bytes:
        base = self._reader()
        if not isinstance(key, str) or not _HEX.fullmatch(key):
            raise StoreError(f"invalid blob id {key!r}")
        data = self._read_object(base, key) if base is not None else None
        if data is None:
            raise StoreError(f"blob {key} is missing or damaged")
        return data

    # -- ingest -------------------------------------------------------------------------

    def _chunk_task(self, base: Path, pieces: list[bytes | memoryview], durable: bool) -> list[str]:
        keys = []
        for piece in pieces:
            key = _digest(piece)
            self._put_object(base, key, piece, durable=durable, fresh=False)
            keys.append(key)
        return keys

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
        _check_id(snapshot_id)
        meta_json = json.loads(json.dumps(meta))  # a private copy; fails early if not JSON
        image_dir = Path(image_dir)
        base = self._ensure()
        with self._shared():
            existing = self.info(snapshot_id)
            if existing is not None:
                self._link(base, existing.tag, snapshot_id)
                return existing
            if not image_dir.is_dir():
                raise StoreError(f"no image directory {image_dir}")
            files = self._ingest_files(base, image_dir, durable)
            created = time.time()
            info = SnapshotInfo(
                id=snapshot_id,
                tag=tag,
                created=created,
                meta=meta_json,
                logical_bytes=sum(f.size for f in files),
                files=len(files),
            )
            # the tag link first: until the publishing rename it dangles (find skips it,
            # gc removes it after a crash), and after it the snapshot is findable at once
            self._link(base, tag, snapshot_id)
            published = self._publish(base, info, files, durable)
            if published.tag != tag:  # another process published this id first
                with contextlib.suppress(OSError):
                    os.unlink(base / "index" / _tag_dir(tag) / snapshot_id)
                self._link(base, published.tag, published.id)
            return published

    def _ingest_files(self, base: Path, image_dir: Path, durable: bool) -> list[_File]:
        """Chunk, hash and store every regular file. The workers hash, compress and write
        (hashlib and zlib release the GIL) while this thread reads ahead into a few
        reused buffers (fresh buffers would cost a page fault per 4 KiB)."""
        size = self.chunk_size
        files: list[_File] = []
        # (entries, each, future): with `each`, one key per entry (a batch of small
        # files); else all keys belong to the one entry
        jobs: list[tuple[list[_File], bool, Future[list[str]]]] = []
        pending: deque[tuple[Future[list[str]], bytearray | None]] = deque()
        free: list[bytearray] = []
        buffers = 0
        small: list[bytes] = []
        small_files: list[_File] = []

        with ThreadPoolExecutor(WORKERS, thread_name_prefix="tonic-store") as pool:

            def wait_oldest() -> None:
                fut, buf = pending.popleft()
                fut.result()
                if buf is not None:
                    free.append(buf)

            def buffer() -> bytearray:
                nonlocal buffers
                if not free and buffers < 3 * WORKERS:
                    buffers += 1
                    return bytearray(self._batch * size)
                while not free:
                    wait_oldest()
                return free.pop()

            def submit(
                entries: list[_File],
                each: bool,
                pieces: list[bytes | memoryview],
                buf: bytearray | None,
            ) -> None:
                while len(pending) >= 3 * WORKERS:
                    wait_oldest()
                fut = pool.submit(self._chunk_task, base, pieces, durable)
                pending.append((fut, buf))
                jobs.append((entries, each, fut))

            def flush_small() -> None:
                nonlocal small, small_files
                if small:
                    submit(small_files, True, list(small), None)
                small, small_files = [], []

            for rel, path in _walk(image_dir):
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError as err:
                    raise StoreError(f"cannot read {path}: {err}") from err
                with open(fd, "rb", buffering=0, closefd=True) as fh:
                    try:
                        st = os.fstat(fd)
                        if not stat.S_ISREG(st.st_mode):
                            continue
                        entry = _File(rel, 0, stat.S_IMODE(st.st_mode), [])
                        files.append(entry)
                        if st.st_size <= size:
                            data = fh.readall()
                            entry.size = len(data)
                            if data:
                                small.append(data)
                                small_files.append(entry)
                                if len(small) >= self._batch:
                                    flush_small()
                            continue
                        while True:
                            buf = buffer()
                            view = memoryview(buf)
                            n = _fill(fh, view)
                            if n == 0:
                                free.append(buf)
                                break
                            entry.size += n
                            pieces = [view[i : min(i + size, n)] for i in range(0, n, size)]
                            submit([entry], False, list(pieces), buf)
                            if n < len(buf):
                                break
                    except OSError as err:
                        raise StoreError(f"cannot read {path}: {err}") from err
            flush_small()
            for entries, each, fut in jobs:
                keys = fut.result()
                if each:
                    for entry, key in zip(entries, keys, strict=True):
                        entry.chunks.append(key)
                else:
                    entries[0].chunks.extend(keys)
        return files

    def _publish(
        self, base: Path, info: SnapshotInfo, files: list[_File], durable: bool
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
        stage = self._tmp_name(base, "snap")
        stage.mkdir(mode=0o700)
        try:
            for name, doc in (("manifest.json", manifest), ("info.json", head)):
                fd = os.open(
                    stage / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
                )
                try:
                    _write_all(fd, json.dumps(doc, separators=(",", ":")).encode())
                    if name == "manifest.json" or durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            target = base / "snapshots" / info.id
            try:
                os.rename(stage, target)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                first = self.info(info.id)
                if first is None:
                    raise StoreError(f"cannot publish snapshot {info.id}: {err}") from err
                return first
            if durable:
                _fsync_dir(base / "snapshots")
            return info
        finally:
            _rmtree(stage)

    def _link(self, base: Path, tag: str, snapshot_id: str) -> None:
        folder = base / "index" / _tag_dir(tag)
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(folder / snapshot_id, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)

    # -- reading ------------------------------------------------------------------------

    def _load(self, base: Path, snapshot_id: str, name: str) -> dict[str, object] | None:
        try:
            with open(base / "snapshots" / snapshot_id / name, "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("id") == snapshot_id else None

    @staticmethod
    def _info_of(doc: dict[str, object]) -> SnapshotInfo | None:
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

    def info(self, snapshot_id: str) -> SnapshotInfo | None:
        base = self._reader()
        if base is None or not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id):
            return None
        doc = self._load(base, snapshot_id, "info.json")
        return self._info_of(doc) if doc is not None else None

    def find(self, tag: str) -> list[SnapshotInfo]:
        """The snapshots published with `tag`, newest first."""
        base = self._reader()
        if base is None:
            return []
        try:
            names = os.listdir(base / "index" / _tag_dir(tag))
        except OSError:
            return []
        found = [i for n in names if (i := self.info(n)) is not None and i.tag == tag]
        return sorted(found, key=lambda i: (i.created, i.id), reverse=True)

    def snapshots(self) -> list[SnapshotInfo]:
        """Every readable snapshot, newest first."""
        base = self._reader()
        if base is None:
            return []
        try:
            names = os.listdir(base / "snapshots")
        except OSError:
            return []
        found = [i for n in names if (i := self.info(n)) is not None]
        return sorted(found, key=lambda i: (i.created, i.id), reverse=True)

    def _objects_of(self, manifest: dict[str, object]) -> set[str]:
        keys: set[str] = set()
        files = manifest.get("files")
        if isinstance(files, dict):
            for entry in files.values():
                if isinstance(entry, dict) and isinstance(entry.get("chunks"), list):
                    keys.update(str(c) for c in entry["chunks"])
        meta = manifest.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("blobs"), list):
            keys.update(b for b in meta["blobs"] if isinstance(b, str) and _HEX.fullmatch(b))
        return keys

    def stored_bytes(self, snapshot_id: str) -> int:
        """On-disk bytes of the distinct objects the snapshot refers to (objects shared
        with other snapshots counted in full), plus its manifest."""
        base = self._reader()
        if base is None:
            return 0
        _check_id(snapshot_id)
        manifest = self._load(base, snapshot_id, "manifest.json")
        if manifest is None:
            return 0
        total = 0
        for key in self._objects_of(manifest):
            with contextlib.suppress(OSError):
                total += os.stat(self._object_path(base, key)).st_size
        with contextlib.suppress(OSError):
            for entry in os.scandir(base / "snapshots" / snapshot_id):
                total += entry.stat(follow_symlinks=False).st_size
        return total

    def _object_sizes(self, base: Path) -> dict[str, tuple[int, float]]:
        """Every object's id -> (size, mtime)."""
        sizes: dict[str, tuple[int, float]] = {}
        try:
            prefixes = list(os.scandir(base / "objects"))
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

    def stats(self) -> StoreStats:
        base = self._reader()
        if base is None:
            return StoreStats(0, 0, 0, 0)
        snaps = self.snapshots()
        objects = self._object_sizes(base)
        stored = sum(size for size, _ in objects.values())
        with contextlib.suppress(OSError), os.scandir(base / "snapshots") as it:
            for d in it:
                with contextlib.suppress(OSError), os.scandir(d.path) as files:
                    stored += sum(f.stat(follow_symlinks=False).st_size for f in files)
        return StoreStats(
            snapshots=len(snaps),
            objects=len(objects),
            stored_bytes=stored,
            logical_bytes=sum(s.logical_bytes for s in snaps),
        )

    # -- materialize --------------------------------------------------------------------

    def materialize(self, snapshot_id: str, dest: Path) -> None:
        """Recreate the snapshot's image files in `dest`, verifying every chunk. Raises
        StoreError when the snapshot is missing or damaged (see remove())."""
        _check_id(snapshot_id)
        base = self._reader()
        manifest = self._load(base, snapshot_id, "manifest.json") if base is not None else None
        if base is None or manifest is None:
            raise StoreError(f"no snapshot {snapshot_id} in the store")
        files, step = manifest.get("files"), manifest.get("chunk_size", CHUNK)
        if not isinstance(files, dict) or not isinstance(step, int) or step <= 0:
            raise StoreError(f"snapshot {snapshot_id} is damaged: no file list")
        batch = max(1, BATCH_BYTES // step)
        dest = Path(dest)
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)

        def chunk(key: str) -> bytes:
            data = self._read_object(base, key)
            if data is None:
                raise StoreError(f"snapshot {snapshot_id} is damaged: chunk {key}")
            return data

        def whole(path: Path, keys: list[str], size: int, mode: int) -> None:
            parts = [chunk(k) for k in keys]
            if sum(len(p) for p in parts) != size:
                raise StoreError(f"snapshot {snapshot_id} is damaged: size of {path.name}")
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
            )
            try:
                for p in parts:
                    _write_all(fd, p)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)

        def ranged(fd: int, keys: list[str], offset: int) -> int:
            for k in keys:
                data = chunk(k)
                _pwrite_all(fd, data, offset)
                offset += len(data)
            return offset

        with self._shared(), ThreadPoolExecutor(WORKERS, thread_name_prefix="tonic-store") as pool:
            futures: list[Future[object]] = []
            open_fds: list[tuple[int, Path, int, int, list[Future[int]]]] = []
            try:
                for name, entry in files.items():
                    path = self._dest_path(dest, str(name), snapshot_id)
                    try:
                        size, mode = int(entry["size"]), int(entry["mode"]) & 0o777
                        keys = [str(k) for k in entry["chunks"]]
                    except (KeyError, TypeError, ValueError) as err:
                        raise StoreError(f"snapshot {snapshot_id} is damaged: {name}") from err
                    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    if len(keys) <= batch:
                        futures.append(pool.submit(whole, path, keys, size, mode))
                        continue
                    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
                    fd = os.open(path, flags, 0o600)
                    os.ftruncate(fd, size)
                    parts: list[Future[int]] = []
                    open_fds.append((fd, path, size, mode, parts))
                    for i in range(0, len(keys), batch):
                        # chunks before the last are exactly chunk_size bytes
                        parts.append(pool.submit(ranged, fd, keys[i : i + batch], i * step))
                for fut in futures:
                    fut.result()
                for fd, path, size, mode, parts in open_fds:
                    ends = [p.result() for p in parts]
                    if ends[-1] != size:
                        raise StoreError(f"snapshot {snapshot_id} is damaged: size of {path.name}")
                    os.fchmod(fd, mode)
            finally:
                for fut in futures:
                    fut.cancel()
                for *_, parts in open_fds:
                    for p in parts:
                        p.cancel()
                pool.shutdown(wait=True)
                for fd, *_ in open_fds:
                    os.close(fd)

    @staticmethod
    def _dest_path(dest: Path, name: str, snapshot_id: str) -> Path:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise StoreError(f"snapshot {snapshot_id} is damaged: file name {name!r}")
        return dest.joinpath(*parts)

    # -- removal, gc --------------------------------------------------------------------

    def _unpublish(self, base: Path, snapshot_id: str, tag: str | None) -> bool:
        """Take a snapshot out of snapshots/ atomically, then delete it."""
        stage = self._tmp_name(base, "rm")
        try:
            os.rename(base / "snapshots" / snapshot_id, stage)
        except FileNotFoundError:
            return False
        if tag is not None:
            with contextlib.suppress(OSError):
                os.unlink(base / "index" / _tag_dir(tag) / snapshot_id)
        _rmtree(stage)
        return True

    def remove(self, snapshot_id: str) -> bool:
        """Remove one snapshot (e.g. a damaged one); its objects go at the next gc.
        False when there was no such snapshot."""
        _check_id(snapshot_id)
        if self._reader() is None:
            return False
        base = self._ensure()
        with self._shared():
            doc = self._load(base, snapshot_id, "info.json")
            tag = str(doc.get("tag", "")) if doc is not None else None
            return self._unpublish(base, snapshot_id, tag)

    def _record_roots(self, base: Path) -> set[str]:
        roots: set[str] = set()
        for name in RECORDS:
            folder = base / name
            with contextlib.suppress(OSError):
                for path in folder.rglob("*.json"):
                    with contextlib.suppress(OSError, ValueError):
                        _hexes(json.loads(path.read_bytes()), roots)
        return roots

    def gc(
        self,
        keep: Callable[[SnapshotInfo], bool] | None = None,
        max_bytes: int | None = None,
        *,
        blob_grace: float = BLOB_GRACE,
        tmp_age: float = TMP_AGE,
    ) -> GcReport:
        """Remove the snapshots `keep` rejects, then the oldest until the store holds at
        most `max_bytes`; then unreferenced objects (sparing blobs put within
        `blob_grace` seconds), staging leftovers and dangling tag links."""
        report = GcReport()
        if self._reader() is None:
            return report
        base = self._ensure()
        now = time.time()
        with self._exclusive():
            # every snapshot and what it refers to
            kept: list[tuple[SnapshotInfo, set[str], int]] = []
            for name in os.listdir(base / "snapshots"):
                manifest = self._load(base, name, "manifest.json")
                info = self._info_of(manifest) if manifest is not None else None
                if manifest is None or info is None:
                    if self._unpublish(base, name, None):
                        report.damaged_removed += 1
                    continue
                if keep is not None and not keep(info):
                    self._unpublish(base, name, info.tag)
                    report.snapshots_removed += 1
                    report.removed_ids.append(name)
                    continue
                size = 0
                with contextlib.suppress(OSError), os.scandir(base / "snapshots" / name) as it:
                    size = sum(e.stat(follow_symlinks=False).st_size for e in it)
                kept.append((info, self._objects_of(manifest), size))

            objects = self._object_sizes(base)
            roots = self._record_roots(base)
            fresh = {k for k, (_, mtime) in objects.items() if now - mtime < blob_grace}
            refs: Counter[str] = Counter()
            for _, keys, _ in kept:
                refs.update(keys)

            if max_bytes is not None:
                pinned = roots | fresh

                def held(key: str) -> bool:
                    return refs[key] > 0 or key in pinned

                total = sum(size for k, (size, _) in objects.items() if held(k))
                total += sum(size for _, _, size in kept)
                kept.sort(key=lambda t: (t[0].created, t[0].id))
                while kept and total > max_bytes:
                    info, keys, size = kept.pop(0)
                    self._unpublish(base, info.id, info.tag)
                    report.snapshots_removed += 1
                    report.removed_ids.append(info.id)
                    total -= size
                    for key in keys:
                        refs[key] -= 1
                        if not held(key) and key in objects:
                            total -= objects[key][0]

            for key, (size, _) in objects.items():
                if refs[key] > 0 or key in roots or key in fresh:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._object_path(base, key))
                    report.objects_removed += 1
                    report.bytes_freed += size

            # staging: ours are stale now (no ingest runs while we hold the lock)
            with os.scandir(base / "tmp") as it:
                for entry in it:
                    stale = entry.name.startswith(OWN_TMP)
                    if not stale:
                        with contextlib.suppress(OSError):
                            stale = now - entry.stat(follow_symlinks=False).st_mtime > tmp_age
                    if stale:
                        _rmtree(Path(entry.path))
                        report.tmp_removed += 1

            # tag links: drop dangling ones, restore missing ones
            live = {info.id: info.tag for info, _, _ in kept}
            with os.scandir(base / "index") as it:
                folders = list(it)
            for folder in folders:
                if not folder.is_dir(follow_symlinks=False):
                    _rmtree(Path(folder.path))
                    continue
                with os.scandir(folder.path) as it:
                    entries = list(it)
                for entry in entries:
                    tag = live.get(entry.name)
                    if tag is None or _tag_dir(tag) != folder.name:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                            report.links_removed += 1
                with contextlib.suppress(OSError):
                    os.rmdir(folder.path)  # only when empty
            for snapshot_id, tag in live.items():
                self._link(base, tag, snapshot_id)
        return report

    def clear(self) -> None:
        """Remove every snapshot, object, staging entry and record (the store's own
        directories only; anything else under the root is left alone, as are lock files,
        which other processes may hold)."""
        if self._reader() is None:
            return
        base = self._ensure()
        with self._exclusive():
            for name in (*LAYOUT, *RECORDS):
                if name != "locks":
                    _rmtree(base / name)
            self._ready = False
            self._dirs.clear()


def _walk(root: Path) -> Iterable[tuple[str, Path]]:
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


def _worth_compressing(data: bytes | memoryview) -> bool:
    """False when four 1 KiB samples spread over `data` do not compress at all (random
    or already compressed bytes): zlib would spend about 1 ms per 64 KiB to find out."""
    if len(data) < 16 * 1024:
        return True
    step = len(data) // 4
    sample = b"".join(data[i * step : i * step + 1024] for i in range(4))
    return len(zlib.compress(sample, LEVEL)) < len(sample) * SAMPLE_RATIO


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
