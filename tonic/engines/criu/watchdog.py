"""A watchdog that ends a kernel's process tree if tonic dies without ending it.

tonic ends its kernel on every way out it sees: the last cell, an error, Ctrl-C, SIGTERM.
SIGKILL it does not see, and a kernel spinning in a cell would run on, orphaned. So for
each kernel tree tonic starts a small helper process in a session of its own, holding a
pidfd of the tree's root (never a recycled pid) and the read end of a pipe whose write
end only tonic holds. `disarm()` writes to the pipe and the helper exits; if tonic dies
first, the helper reads end-of-file and sends SIGKILL to the root, the init of the
kernel's PID namespace, which ends every process in it.

A restore is watched from before CRIU starts: killed with tonic half-way (it dies of
its parent-death signal), CRIU leaves the tasks it made waiting in its restorer for
good, with every signal but SIGKILL blocked, orphaned. The helper then ends every
process that holds a file of the restore's private folder (those tasks hold CRIU's log
there) and the root CRIU's pid file names, if it runs the init. Once CRIU is done,
`watch(pid)` tells the helper the restored root.

So is a dump: killed with tonic, CRIU leaves what it forked, a helper of its own that
sleeps until CRIU ends it (CRIU's kernel feature checks fork one at every start) or an
action script. Those have their working folder or a file in the dump's folder, which
`dumping(folder)` tells the helper.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import tonic

# Run with -I -S: no site, nothing imported but built-in modules (~10 ms of start-up,
# spent while tonic goes on; tonic.procs only after tonic's death, if CRIU was at work).
# After the kill it removes the run's private folder (the kernel's plan), which tonic
# would have removed.
_HELPER = """
import os, sys, time, _signal
pidfd, pipe, leftovers, restoring, pidfile, init, home = sys.argv[1:]
pidfd, pipe = int(pidfd), int(pipe)
said = b""
dumping = set()
while True:
    try:
        chunk = os.read(pipe, 64)
    except OSError:
        chunk = b""
    if not chunk:
        break
    if b"x" in chunk:
        sys.exit(0)
    said += chunk
    while b"\\n" in said:
        line, said = said.split(b"\\n", 1)
        if line[:1] in (b"+", b"-"):
            folder = os.fsdecode(bytes.fromhex(line[1:].decode()))
            (dumping.add if line[:1] == b"+" else dumping.discard)(folder)
            continue
        try:
            pidfd, restoring = os.pidfd_open(int(line)), ""
        except (OSError, ValueError):
            pass


if pidfd >= 0:
    try:
        _signal.pidfd_send_signal(pidfd, 9)
    except OSError:
        pass
# tonic's files close before its children hear of its death: CRIU may still make a
# task or a helper after a first look, so look again until two looks find nothing.
folders = dumping | ({restoring} if restoring else set())
if folders:
    sys.path.insert(0, home)
    from tonic.procs import holders
quiet = 0
while folders and quiet < 2:
    victims = holders(folders)
    try:
        with open(pidfile) as f:
            root = int(f.read())
        if restoring and os.readlink(f"/proc/{root}/exe") == init:
            victims.add(root)
    except (OSError, ValueError):
        pass
    for victim in victims:
        try:
            os.kill(victim, 9)
        except OSError:
            pass
    quiet = 0 if victims else quiet + 1
    time.sleep(0.05)
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
# The folder tonic is imported from.
_HOME = os.path.dirname(os.path.dirname(os.path.abspath(tonic.__file__)))


class Watchdog:
    def __init__(
        self,
        pid: int | None,
        leftovers: Path | None = None,
        *,
        restoring: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """Watch over the process tree rooted at `pid`, or (None) over a restore:
        `restoring` is its private folder, CRIU's pid file and the init the restored
        root runs; `leftovers`: a folder of the run to remove after it (best effort:
        without pidfds or a process to spare, nothing watches)."""
        self._write: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            pidfd = os.pidfd_open(pid) if pid is not None else -1
        except (OSError, AttributeError):
            return
        keep = (pidfd,) if pidfd >= 0 else ()
        read, write = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [
                    *(sys.executable, "-I", "-S", "-c", _HELPER),
                    *(str(pidfd), str(read), str(leftovers or "")),
                    *((os.path.realpath(r) for r in restoring) if restoring else ("",) * 3),
                    _HOME,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(*keep, read),
                start_new_session=True,  # not ended by a Ctrl-C meant for tonic
                cwd="/",
            )
            self._write = write
        except OSError:
            os.close(write)
        finally:
            os.close(read)
            if pidfd >= 0:
                os.close(pidfd)

    def watch(self, pid: int) -> None:
        """The restore is done: from now on, watch the tree it made, rooted at `pid`
        (tonic's child, so the pid cannot be another process's yet)."""
        self._say(f"{pid}\n")

    @contextlib.contextmanager
    def dumping(self, folder: Path) -> Iterator[None]:
        """While CRIU dumps into `folder`: killed with tonic, CRIU leaves behind what it
        forked (a helper of its own that sleeps for good, an action script), each with
        its working folder or a file in `folder`; the helper ends those."""
        said = os.fsencode(os.path.realpath(folder)).hex()
        self._say(f"+{said}\n")
        try:
            yield
        finally:
            self._say(f"-{said}\n")

    def _say(self, line: str) -> None:
        if self._write is not None:
            with contextlib.suppress(OSError):
                os.write(self._write, line.encode())

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
