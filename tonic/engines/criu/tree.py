"""A kernel's process tree under the criu engine, fresh or restored.

tonic's init (kernel/init.c) makes a new PID namespace and is its init and its own
session leader, as CRIU needs to dump and restore the tree while the original still runs
(pids inside the namespace are private). Below it, a parent with tonic's pid (node's
process.ppid is the process that started it, as under node) starts node with the
init's own host pid (unique on the host while the namespace lives; a restored tree
keeps its pids), so signals and `process.kill(process.pid)` behave as usual. The init
prints nothing, and tells tonic on its status pipe how node ended (nsinit.py). stdin is
/dev/null (or the file on tonic's stdin); the kernel's two channels and the status pipe
are pipes, stdout and stderr pipes, a pseudo-terminal's slave (dumped as an external
terminal) or the user's file (kernel/stdio.py). A restore re-attaches this run's
(`--inherit-fd`): fresh pipes, the new terminal, the new run's file (the same open file,
at its offset: CRIU neither reopens it nor checks its size). Once node has ended, tonic
is done with the tree: the init lets go of the pipes and lives on, unwatched, while
node's detached children do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import subprocess
from pathlib import Path

from tonic.engines.criu.seccomp import deny_io_uring
from tonic.errors import EngineError
from tonic.kernel.driver import Program, kernel_argv, spawn
from tonic.kernel.nsinit import STATUS_FD, InitStatus, init_argv
from tonic.kernel.pipes import Pipes
from tonic.procs import descendants
from tonic.settings import node_argv0

START_TIMEOUT = 10.0  # seconds for the init to say its pid


def status_pipe() -> tuple[int, int]:
    """(tonic's read end, the write end for the init, above the kernel's fds 0-5)."""
    read, write = os.pipe()
    high = fcntl.fcntl(write, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(write)
    return read, high


class Tree:
    """A kernel's tree, seen through its init: node's status comes from its status pipe;
    `kill` ends the namespace (SIGKILL to its init, the one signal it cannot ignore)."""

    def __init__(self, pid: int, status: InitStatus) -> None:
        self._pid = pid
        self.status = status

    @property
    def pid(self) -> int:
        return self._pid

    def init_pid(self) -> int:
        """The host pid of the namespace's init: the root CRIU dumps."""
        return self._pid

    def poll(self) -> int | None:
        return self.status.poll()

    def wait(self) -> int:
        return self.status.wait()

    def kill(self) -> None:
        if self.status.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)


def fresh(program: Program, pipes: Pipes, env: dict[str, str], init: Path) -> Tree:
    """Start the init in a new namespace, node below it."""
    env = dict(env)
    preload = env.pop("LD_PRELOAD", None)
    read, write = status_pipe()
    node, *rest = kernel_argv(program)
    argv = init_argv(
        init,
        [node_argv0(), *rest],
        executable=node,
        status_fd=write,
        namespace=True,
        preload=preload,
        parent=os.getpid(),  # node's process.ppid: tonic, which started it
    )
    # A file on stdin is node's (CRIU reopens it by path at restore, at its offset).
    stdin = None if program.stdin else subprocess.DEVNULL
    status = InitStatus(read)
    try:
        launcher = spawn(
            argv, program, pipes, env, deny_io_uring, "the kernel", stdin=stdin, keep=(write,)
        )
    except BaseException:
        status.close()
        raise
    finally:
        os.close(write)
    launcher.wait()  # it only makes the namespace, says the init's pid, and exits
    pid = status.wait_host_pid(START_TIMEOUT)
    if pid is None:
        status.close()
        raise EngineError("the kernel's namespace did not start")
    return Tree(pid, status)


def restored(pid: int, status: int) -> Tree:
    """A tree CRIU restored, detached (reparented to tonic), its status pipe re-attached
    to `status` (tonic's read end)."""
    return Tree(pid, InitStatus(status))


def processes(pid: int) -> tuple[int, ...]:
    """The tree at `pid`: itself and its descendants."""
    return (pid, *descendants(pid))


def resume(processes: tuple[int, ...]) -> None:
    """Let a tree CRIU left stopped run (SIGCONT to each of its `processes`)."""
    for each in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGCONT)


ROLES = ((1, "stdout"), (2, "stderr"), (3, "cmd"), (4, "events"), (STATUS_FD, "status"))


def pipe_names(pid: int) -> dict[str, str]:
    """What is on the tree root's fds 1-5, as CRIU's `--inherit-fd` names it: a pipe
    `pipe:[inode]`, a terminal `tty[rdev:dev]` (hex), a file its path without the
    leading slash."""
    names = {}
    for fd, role in ROLES:
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
