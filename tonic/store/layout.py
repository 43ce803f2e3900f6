"""The cache root: its table of folders, the private-root check, locks, staging names.

CRIU images hold process memory (secrets included), so everything under the root is
private to the user: directories 0700, files 0600. Layout under the root:

    objects/ab/<sha256>        chunks and blobs; key = sha256 of the raw bytes; one header
                               byte says how the rest is stored (raw or zlib level 1)
    snapshots/<id>/manifest.json   {"id", "tag", "created", "meta", "logical_bytes",
                                   "nfiles", "chunk_size", "files": {relative name:
                                   {"size", "mode", "chunks": [sha256, ...]}}}
    snapshots/<id>/info.json       the same without "files" (cheap to list 2000 of them)
    index/<sha256(tag)[:32]>/<id>  empty file per snapshot of a tag, for find(tag)
    tmp/                       staging: "<kind>.<pid>.<start>.<unique>", named for the
                               process that owns the entry (its pid and the pid's start
                               time in /proc/PID/stat, so a reused pid is not it): the
                               store's own ("ingest-*"), CRIU dumps on their way in
                               (owned by the ingest worker), a restore's scratch
                               folder, a memo or C helper on its way to memo/ or
                               bin/. An entry whose owner is gone is removed at the
                               next run and gc; one of another name, at a gc once it is
                               an hour old
    locks/                     flock files: "store.lock" (gc exclusive, everyone else
                               shared), one per lock(name), and the ingest worker's
                               "ingest-<sha256(notebook)[:32]>"

and the folders other parts of tonic keep there:

    runs/<key>.json            records (records.py) of whole runs (timetravel/records.py)
    files/<digest>.json        records of the paths a notebook's last run wrote, with
                               their starting states (timetravel/fstravel.py)
    hot/                       unpacked images of the newest snapshots (hot.py)
    memo/                      small memos of slow probes (memo.py)
    bin/                       tonic's clock shim, built once (engines/natives.py)

Every record under runs/ and files/ names the objects it needs in its "blobs" field;
gc keeps those (gc.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tonic import settings
from tonic.errors import TonicError

OBJECTS = "objects"
SNAPSHOTS = "snapshots"
INDEX = "index"
TMP = "tmp"
LOCKS = "locks"
RUNS = "runs"
FILES = "files"
HOT = "hot"
MEMO = "memo"
BIN = "bin"

LAYOUT = (OBJECTS, SNAPSHOTS, INDEX, TMP, LOCKS)  # the store's own, made by ensure()
RECORDS = (RUNS, FILES)  # kinds of records (records.py): what they name, gc keeps
OWN_TMP = "ingest-"  # the store's own staging entries under tmp/
STORE_LOCK = "store.lock"
INGEST_LOCK = "ingest-"  # locks/ingest-<sha256(notebook)[:32]>: a notebook's worker


FULL_BELOW = 1 << 20  # a cache's disk with less free space than this is full


class StoreError(TonicError):
    """The snapshot store cannot be used, or a snapshot or blob is missing or damaged."""


class CacheFullError(StoreError):
    """The cache's disk is full: what was being written is not in the cache."""


def is_full_error(err: BaseException) -> bool:
    """Whether an error says the disk (or the user's quota) is full."""
    if isinstance(err, CacheFullError):
        return True
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: Path) -> bool:
    """Whether the disk `path` is on (or would be: its nearest existing folder) has less
    than FULL_BELOW bytes, or no inode, left for tonic (root may use the reserve)."""
    for where in (path, *path.parents):
        try:
            st = os.statvfs(where)
            break
        except FileNotFoundError:
            continue
        except OSError:
            return False
    else:
        return False
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    inodes = st.f_ffree if os.geteuid() == 0 else st.f_favail
    return blocks * st.f_frsize < FULL_BELOW or (st.f_files > 0 and inodes == 0)


# -- staging names: an entry under tmp/ carries its owner --------------------------------

_OWNED = re.compile(r"(?P<kind>[a-z][a-z-]*)\.(?P<pid>[0-9]+)\.(?P<start>[0-9]+)\.[0-9a-z-]+")


def start_time(pid: int) -> int | None:
    """When process `pid` started (field 22 of /proc/PID/stat, in clock ticks since
    boot); None when there is no such process, or only its zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class Owner:
    """A process, as named in staging entries: a pid and that pid's start time."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> Owner | None:
        """Process `pid` (None: it is gone)."""
        start = start_time(pid)
        return cls(pid, start) if start is not None else None

    def alive(self) -> bool:
        return start_time(self.pid) == self.start

    def name(self, kind: str, unique: str = "") -> str:
        """A fresh name of an entry of `kind` owned by this process."""
        token = f"{unique}-{secrets.token_hex(4)}" if unique else secrets.token_hex(4)
        return f"{kind}.{self.pid}.{self.start}.{token}"


def owner_of(name: str) -> Owner | None:
    """The owner a staging entry's name carries (None: a name of another form)."""
    found = _OWNED.fullmatch(name)
    return Owner(int(found["pid"]), int(found["start"])) if found else None


_me: Owner | None = None


def me() -> Owner:
    """This process (again after a fork: the warm server's workers are processes of
    their own)."""
    global _me
    if _me is None or _me.pid != os.getpid():
        _me = Owner.of(os.getpid()) or Owner(os.getpid(), 0)
    return _me


def staging_name(base: Path, kind: str, owner: Owner | None = None) -> Path:
    """A fresh name under `base`'s tmp/ for an entry of `kind` that `owner` (default:
    this process) removes, or whose leftovers go once it is gone."""
    return base / TMP / (owner or me()).name(kind)


def default_root() -> Path:
    """$TONIC_CACHE, else $XDG_CACHE_HOME/tonic, else ~/.cache/tonic (tonic.settings)."""
    return settings.current().cache


def name_digest(name: str) -> str:
    """The file name that stands for an arbitrary string (a tag, a lock's name)."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Root:
    """The cache root at `path`, checked to be a private directory of ours before use.
    Nothing is created on disk until something is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._base: Path | None = None  # the checked real directory
        self._ready = False
        self._seq = 0

    def _check(self, *, create: bool) -> Path | None:
        """The root's real path once it is checked to be a private directory of ours;
        None when it does not exist and `create` is false."""
        if self._base is not None:
            return self._base
        uid = os.getuid()
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            if not create:
                return None
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.path.mkdir(mode=0o700, exist_ok=True)
                st = os.lstat(self.path)
            except OSError as err:
                raise StoreError(f"cannot create the snapshot store {self.path}: {err}") from err
        except OSError as err:
            raise StoreError(f"cannot use the snapshot store {self.path}: {err}") from err
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid != uid:
                raise StoreError(
                    f"the snapshot store {self.path} is a symlink owned by uid {st.st_uid}; "
                    "refusing to follow it"
                )
            try:
                st = os.stat(self.path)
            except OSError as err:
                raise StoreError(f"cannot use the snapshot store {self.path}: {err}") from err
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"the snapshot store {self.path} is not a directory")
        if st.st_uid != uid:
            raise StoreError(
                f"the snapshot store {self.path} is owned by uid {st.st_uid}, not by you "
                f"(uid {uid}); refusing to use it"
            )
        real = Path(os.path.realpath(self.path))
        if stat.S_IMODE(st.st_mode) & 0o077:
            try:
                os.chmod(real, 0o700)
            except OSError as err:
                raise StoreError(f"cannot make {self.path} private: {err}") from err
        self._base = real
        return real

    def ensure(self) -> Path:
        """The root, with the layout created and private (cheap to call again: another
        process may have cleared the store meanwhile)."""
        base = self._check(create=True)
        assert base is not None
        if self._ready and not base.is_dir():
            self._base, self._ready = None, False  # the root itself went away
            base = self._check(create=True)
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

    def reader(self) -> Path | None:
        """The root for reading, or None when the store does not exist yet."""
        return self._check(create=False)

    def forget(self) -> None:
        """The layout may be gone (clear()): ensure() checks it again."""
        self._ready = False

    def tmp_name(self, base: Path, kind: str) -> Path:
        """A fresh name for one of the store's own staging entries under tmp/."""
        self._seq += 1
        return base / TMP / me().name(f"{OWN_TMP}{kind}", str(self._seq))

    # -- locks --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, filename: str, op: int) -> Iterator[None]:
        base = self.ensure()
        path = base / LOCKS / filename
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, op)
            yield
        finally:
            os.close(fd)  # releases the lock

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock for callers (e.g. one per notebook), held while in `with`."""
        return self._flock(name_digest(name), fcntl.LOCK_EX)

    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Held by everything that writes, except gc."""
        return self._flock(STORE_LOCK, fcntl.LOCK_SH)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held by gc and clear(): nothing else writes meanwhile."""
        return self._flock(STORE_LOCK, fcntl.LOCK_EX)
