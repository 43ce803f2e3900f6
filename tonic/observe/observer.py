"""The Observer: one fanotify group marking every real filesystem, a proc connector, and
a reader thread that reads both as events happen; `take()` drains them (the sync point)
and hands over what the tree did since the last take."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from tonic.errors import TonicError
from tonic.observe import fanotify as fan
from tonic.observe.activity import Activity, Builder
from tonic.observe.connector import Connector
from tonic.observe.paths import Filesystems, Resolver, mark_all
from tonic.observe.record import Recorder
from tonic.observe.tree import Tree

INIT_FLAGS = (
    fan.FAN_CLASS_NOTIF
    | fan.FAN_CLOEXEC
    | fan.FAN_NONBLOCK
    | fan.FAN_UNLIMITED_QUEUE
    | fan.FAN_REPORT_DFID_NAME_TARGET
)
MASK = (
    fan.FAN_OPEN
    | fan.FAN_MODIFY
    | fan.FAN_CLOSE_WRITE
    | fan.FAN_ATTRIB
    | fan.FAN_CREATE
    | fan.FAN_DELETE
    | fan.FAN_RENAME
    | fan.FAN_ONDIR
)
_DIR_RENAME = fan.FAN_RENAME | fan.FAN_ONDIR
_RMDIR = fan.FAN_DELETE | fan.FAN_ONDIR
_BUFFER = 1 << 18
# Before the first attach the fanotify queue is left alone (its events are attributed at
# the attach, so the tree's start-up is in the first take), for at most this long.
_DEFER_NS = 10_000_000_000
_COALESCE = 0.002  # seconds the reader waits after a wake-up before it reads


class ObserveError(TonicError):
    """File observing cannot start here (not root, no fanotify, no proc connector)."""


@functools.cache
def unavailable() -> str | None:
    """None when observing works here, else one line why."""
    if os.geteuid() != 0:
        return "observing files needs root (fanotify filesystem marks, the proc connector)"
    try:
        fd = fan.fanotify_init(INIT_FLAGS)
    except (OSError, AttributeError) as err:
        return f"fanotify is unavailable: {err}"
    try:
        fan.fanotify_mark(fd, fan.FAN_MARK_ADD | fan.FAN_MARK_FILESYSTEM, MASK, "/")
    except OSError as err:
        return f"fanotify cannot mark the root filesystem: {err}"
    finally:
        os.close(fd)
    try:
        conn = Connector()
    except OSError as err:
        return f"the kernel's proc connector is unavailable: {err}"
    try:
        return _connector_works(conn)
    finally:
        conn.close()


def _connector_works(conn: Connector) -> str | None:
    """A fork must be reported (the connector lives in the initial network namespace)."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if any(ev.tgid == child.pid for ev in conn.read()):
            return None
        select.select([conn.fileno()], [], [], 0.05)
    return "the kernel's proc connector reports no forks here (not the initial namespaces?)"


class Observer(Recorder):
    """What one process tree does to files; a context manager. See the package's doc."""

    def __init__(self, *, ignore: Iterable[Path] = ()) -> None:
        why = unavailable()
        if why is not None:
            raise ObserveError(why)
        self._ignore = tuple(str(Path(p).resolve()) for p in ignore)
        self._fan = fan.fanotify_init(INIT_FLAGS)
        self._fss = Filesystems()
        try:
            self._fss = mark_all(self._fan, MASK)
            self._tree = Tree(Connector())
        except OSError as err:
            self._fss.close()
            os.close(self._fan)
            raise ObserveError(f"file observing cannot start: {err}") from err
        self._resolver = Resolver(self._fss)
        self._builder = Builder()
        self._lock = threading.Lock()
        self._attached = False
        self._closed = False
        self._born = time.monotonic_ns()
        self._buf = bytearray(_BUFFER)
        self._fresh: list[int] = []
        self._renames: list[tuple[int, str, str]] = []
        self._unnamed: list[tuple[int, bool | None, fan.Fid]] = []
        self._dead: dict[tuple[int, bytes], tuple[str, bool]] = {}
        self.events_read = 0  # all events read, the machine's, for measurements
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="tonic-observe", daemon=True)
        self._thread.start()

    @property
    def marked(self) -> list[str]:
        """The filesystems marked: "mount point (type)"."""
        return list(self._fss.marked)

    @property
    def unmarked(self) -> dict[str, str]:
        """Mount points whose filesystem could not be marked -> why (never observed)."""
        return dict(self._fss.unmarked)

    def attach(self, init_pid: int) -> None:
        """The tree is every process in init_pid's PID namespace (init_pid: its init, as
        this process sees it) and their descendants; any earlier tree is forgotten."""
        with self._lock:
            if self._attached:
                self._pump_all()
            try:
                self._tree.attach(init_pid)
            except ProcessLookupError as err:
                raise ObserveError(f"no process {init_pid} to observe") from err
            if self._attached:
                self._settle()
                self._builder.take()
            self._attached = True
        os.write(self._wake_w, b"a")

    def take(self) -> Activity:
        """What the tree did since the last take (or, for the first, since it started);
        every event the tree's syscalls queued before this call is in it."""
        with self._lock:
            for _ in range(8):  # until one pass reads nothing: see Recorder._undo_renames
                if not self._pump_all():
                    break
            if self._tree.connector.overflowed:
                self._builder.lost.append("the proc connector dropped fork/exit events")
                self._tree.connector.overflowed = False
            self._settle()
            return self._builder.take()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        with self._lock:
            self._tree.connector.close()
            self._fss.close()
            os.close(self._fan)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def __enter__(self) -> Observer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # The reader thread.

    def _run(self) -> None:
        # A Ctrl-C or SIGTERM sent to tonic must reach its main thread: delivered here,
        # it would only be noted for the main thread, which waits in a system call that
        # nothing then interrupts (its selector, while a cell spins), and tonic ran on.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        conn = self._tree.connector.fileno()
        while not self._closed:
            watching = self._attached or time.monotonic_ns() - self._born > _DEFER_NS
            fds = [self._wake_r, conn, self._fan] if watching else [self._wake_r, conn]
            ready, _, _ = select.select(fds, [], [], 1.0)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 64)
            if self._closed:
                return
            time.sleep(_COALESCE)  # fewer, fuller batches: a flood costs less CPU
            with self._lock:
                self._tree.drain()
                if watching:
                    self._pump_all()

    def _pump_all(self) -> int:
        """Reads and handles the queue until it is empty; returns the batches read."""
        batches = 0
        while self._pump():
            batches += 1
        return batches

    def _pump(self) -> bool:
        stamp = time.monotonic_ns()
        try:
            n = os.readv(self._fan, [self._buf])
        except BlockingIOError:
            self._tree.window = stamp
            return False
        self._tree.drain()  # forks and exits up to this read are known
        if self._attached:
            self._batch(n)
        return True

    def _batch(self, n: int) -> None:
        buf, unpack, member = self._buf, fan.METADATA.unpack_from, self._tree.member
        # Within one batch a tgid's verdict cannot change (same window, same lives).
        verdicts: dict[int, bool | None] = {os.getpid(): False}
        off = count = 0
        while off < n:
            length, _, _, mlen, mask, fd, pid = unpack(buf, off)
            count += 1
            if fd >= 0:
                os.close(fd)
            if mask & fan.FAN_Q_OVERFLOW:
                self._builder.lost.append("fanotify's event queue overflowed")
            else:
                verdict = verdicts.get(pid, 0)
                if verdict == 0:
                    verdict = verdicts[pid] = member(pid)
                if (
                    verdict is not False
                    or mask & _DIR_RENAME == _DIR_RENAME
                    or (mask & _RMDIR == _RMDIR and self._unnamed)
                ):
                    self._record(off + mlen, off + length, mask, verdict)  # type: ignore[arg-type]
            off += length
        self.events_read += count
