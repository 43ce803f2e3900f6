"""A kernel's process tree under the criu engine, fresh or restored.

`unshare --pid --fork setsid sh -c SHELL node ...`: the shell is the init of a new PID
namespace and its own session leader, as CRIU needs to dump and restore the tree while
the original still runs (pids inside the namespace are private); node runs as its
child, so signals and `process.kill(process.pid)` behave as usual. stdin is /dev/null (or
the file on tonic's stdin); the kernel's two channels are pipes, stdout and stderr pipes,
a pseudo-terminal's slave (dumped as an external terminal) or the user's file
(kernel/stdio.py). A restore re-attaches this run's (`--inherit-fd`): fresh pipes, the
new terminal, the new run's file (the same open file, at its offset: CRIU neither
reopens it nor checks its size).

The shell says nothing of its own: it starts node in the background, with stdin and
stderr kept on fds 8 and 9, and waits for it with its own stderr on /dev/null (in the
foreground, sh would print "Killed" or "Aborted" where node dies of a signal).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from tonic.engines.criu.seccomp import deny_io_uring
from tonic.errors import EngineError
from tonic.kernel.driver import Program, kernel_argv, spawn
from tonic.kernel.pipes import Pipes, shell_status

# Where the shell keeps the notebook's stderr (its own fd 2 is /dev/null): see pipe_names.
STDERR_FD = 9
SHELL = (
    f"exec 8<&0 {STDERR_FD}>&2; "
    f'"$@" 0<&8 2>&{STDERR_FD} 8<&- {STDERR_FD}>&- & '
    "exec 2>/dev/null 8<&-; wait $!; exit $?"
)


class FreshTree:
    """`unshare` and the namespace it made: node below a shell that is the init."""

    def __init__(self, program: Program, pipes: Pipes, env: dict[str, str]) -> None:
        argv = ["unshare", "--pid", "--fork", "setsid", "sh", "-c", SHELL, "tonic"]
        env = dict(env)
        preload = env.pop("LD_PRELOAD", None)
        if preload:
            # Only node loads the clock shim: in the shell it would close fds 3 and 4.
            argv += ["env", f"LD_PRELOAD={preload}"]
        argv += kernel_argv(program)
        # A file on stdin is node's (CRIU reopens it by path at restore, at its offset).
        stdin = None if program.stdin else subprocess.DEVNULL
        self.proc = spawn(argv, program, pipes, env, deny_io_uring, "the kernel", stdin=stdin)
        self._init: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def init_pid(self) -> int:
        """The host pid of the namespace's init (the shell): the root CRIU dumps."""
        if self._init is None:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            for _ in range(2000):
                found = children.read_text().split()
                if found:
                    self._init = int(found[0])
                    break
                time.sleep(0.001)
            else:
                raise EngineError("the kernel's namespace did not start")
        return self._init

    def poll(self) -> int | None:
        code = self.proc.poll()
        return None if code is None else shell_status(code)

    def wait(self) -> int:
        return shell_status(self.proc.wait())

    def kill(self) -> None:
        if self._init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._init, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


class RestoredTree:
    """A tree CRIU restored, detached: reparented to tonic, its subreaper."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._status: int | None = None

    @property
    def pid(self) -> int:
        return self._pid

    def init_pid(self) -> int:
        return self._pid

    def _reap(self, flags: int) -> int | None:
        if self._status is None:
            try:
                got, status = os.waitpid(self._pid, flags)
            except ChildProcessError:
                self._status = 0
                return 0
            if got == 0:
                return None
            code = os.waitstatus_to_exitcode(status)
            self._status = shell_status(code) if code >= 0 else code
        return self._status

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self) -> int:
        status = self._reap(0)
        assert status is not None
        return status

    def kill(self) -> None:
        if self._status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)


def tree_rss(pid: int) -> int:
    """Resident bytes of the process tree rooted at `pid`."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return total


def pipe_names(pid: int) -> dict[str, str]:
    """What is on the tree root's fds 1, 9 (stderr), 3 and 4, as CRIU's `--inherit-fd`
    names it: a pipe `pipe:[inode]`, a terminal `tty[rdev:dev]` (hex), a file its path
    without the leading slash."""
    names = {}
    for fd, role in ((1, "stdout"), (STDERR_FD, "stderr"), (3, "cmd"), (4, "events")):
        where = f"/proc/{pid}/fd/{fd}"
        name = os.readlink(where)
        if name.startswith("/"):
            st = os.stat(where)
            name = f"tty[{st.st_rdev:x}:{st.st_dev:x}]" if stat.S_ISCHR(st.st_mode) else name[1:]
        names[role] = name
    return names


def external_ttys(names: dict[str, str]) -> list[str]:
    """The terminals among `names` (pipe_names): CRIU dumps them as external."""
    return sorted({name for name in names.values() if name.startswith("tty[")})
