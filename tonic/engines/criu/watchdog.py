"""A watchdog that ends a kernel's process tree if tonic dies without ending it.

tonic ends its kernel on every way out it sees: the last cell, an error, Ctrl-C, SIGTERM.
SIGKILL it does not see, and a kernel spinning in a cell would run on, orphaned. So for
each kernel tree tonic starts a small helper process in a session of its own, holding a
pidfd of the tree's root (never a recycled pid) and the read end of a pipe whose write
end only tonic holds. `disarm()` writes to the pipe and the helper exits; if tonic dies
first, the helper reads end-of-file and sends SIGKILL to the root, the init of the
kernel's PID namespace, which ends every process in it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

# Run with -I -S: no site, nothing imported but built-in modules (~10 ms of start-up,
# spent while tonic goes on). After the kill it removes the run's private folder (the
# kernel's plan), which tonic would have removed.
_HELPER = """
import os, sys, _signal
pidfd, pipe, leftovers = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
try:
    said = os.read(pipe, 1)
except OSError:
    said = b""
if not said:
    try:
        _signal.pidfd_send_signal(pidfd, 9)
    except OSError:
        pass
    if leftovers:
        for top, dirs, files in os.walk(leftovers, topdown=False):
            for name in files:
                try:
                    os.unlink(os.path.join(top, name))
                except OSError:
                    pass
            try:
                os.rmdir(top)
            except OSError:
                pass
"""


class Watchdog:
    def __init__(self, pid: int, leftovers: Path | None = None) -> None:
        """Watch over the process tree rooted at `pid`; `leftovers`: a folder of the run
        to remove after it (best effort: without pidfds or a process to spare, nothing
        watches)."""
        self._write: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            return
        read, write = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [
                    *(sys.executable, "-I", "-S", "-c", _HELPER),
                    *(str(pidfd), str(read), str(leftovers or "")),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(pidfd, read),
                start_new_session=True,  # not ended by a Ctrl-C meant for tonic
                cwd="/",
            )
            self._write = write
        except OSError:
            os.close(write)
        finally:
            os.close(read)
            os.close(pidfd)

    def disarm(self) -> None:
        """tonic is done with the tree: the helper exits without a signal."""
        if self._write is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._write, b"x")
        os.close(self._write)
        self._write = None
        # Not waited for: it exits at once, and subprocess reaps it later.
        self._proc = None
