"""tonic's side of its init (init.c), node's parent in a snapshot engine's namespace:
its command line, and what it says on its status pipe.

The init writes "init N" (its host pid, when it made the namespace) and, when node ends,
"exit N" or "signal N": node's exact status, whatever the init itself does next (it
stays while node's detached children live). End of file without a status: the init was
killed (SIGKILL: by tonic, its watchdog, or from outside), and node with it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from pathlib import Path

STATUS_FD = 5  # the status pipe's fd in the init (init.c), where CRIU finds it


def init_argv(
    init: Path,
    argv: list[str],
    *,
    executable: str | None = None,
    status_fd: int | None = None,
    fifos: str | None = None,
    merged: bool = False,
    namespace: bool = False,
    preload: str | None = None,
    pid: int | None = None,
    parent: int | None = None,
) -> list[str]:
    """The init's command line: it starts `argv` (node and its arguments; the file run
    is `executable`, if not argv[0]) with `pid` (default: see init.c), below a parent
    with pid `parent` (default: none, the init is node's parent)."""
    out = [str(init)]
    if executable is not None:
        out += ["-x", executable]
    if namespace:
        out.append("-n")
    if status_fd is not None:
        out += ["-s", str(status_fd)]
    if fifos is not None:
        out += ["-f", fifos, *(["-m"] if merged else [])]
    if preload:
        out += ["-p", preload]
    if pid is not None:
        out += ["-P", str(pid)]
    if parent is not None:
        out += ["-Q", str(parent)]
    return [*out, "--", *argv]


class InitStatus:
    """The read end of an init's status pipe (owned: closed when the status is known)."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self.buffer = b""
        self.host_pid: int | None = None
        self.status: int | None = None  # node's, Popen-style: -N for signal N

    def _take(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            what, _, number = line.decode("ascii", "replace").partition(" ")
            with contextlib.suppress(ValueError):
                if what == "init":
                    self.host_pid = int(number)
                elif what == "exit":
                    self.status = int(number)
                elif what == "signal":
                    self.status = -int(number)

    def _read(self, timeout: float | None) -> bool:
        """Read what is there (waiting up to `timeout`); False at end of file or when
        nothing came in time."""
        assert self.fd is not None
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        data = os.read(self.fd, 4096)
        if data:
            self._take(data)
            return True
        if self.status is None:
            self.status = -signal.SIGKILL
        return False

    def wait_host_pid(self, timeout: float) -> int | None:
        """The init's host pid, once it said it (None: it did not, in time)."""
        deadline = time.monotonic() + timeout
        while self.host_pid is None and self.fd is not None and self.status is None:
            if not self._read(max(0.0, deadline - time.monotonic())):
                break
        return self.host_pid

    def poll(self) -> int | None:
        while self.status is None and self.fd is not None:
            if not self._read(0):
                break
        self._close_if_done()
        return self.status

    def wait(self) -> int:
        while self.status is None and self.fd is not None:
            if not self._read(None):
                break
        self._close_if_done()
        assert self.status is not None
        return self.status

    def _close_if_done(self) -> None:
        if self.status is not None and self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
