"""The criu engine: a CRIU checkpoint after every cell, and resume from the longest
prefix of cells whose snapshot is still valid (see timetravel.py for which one).

The kernel's process tree: `unshare --pid --fork setsid sh -c '"$@"' node ...`. The shell
is the init of a new PID namespace and its own session leader, as CRIU needs to dump and
restore the tree while the original still runs (pids inside the namespace are private);
node runs as its child, so signals and `process.kill(process.pid)` behave as usual.
stdin is /dev/null and stdout, stderr and the kernel's two channels are pipes, which a
restore re-attaches to fresh pipes (`--inherit-fd`). libuv must not open an io_uring:
UV_USE_IO_URING=0 (hidden again from the notebook's process.env) and a seccomp filter
that fails io_uring_setup, for node versions that ignore the variable. A watchdog
(watchdog.py) ends the tree if tonic is killed before it can.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tonic.engines.base import Availability
from tonic.engines.criu import tool as criu_tool
from tonic.engines.criu.seccomp import deny_io_uring
from tonic.engines.criu.watchdog import Watchdog
from tonic.engines.snapshots import (
    Policy,
    RestoreError,
    finish,
    run_kernel_with_snapshots,
    run_with_snapshots,
)
from tonic.errors import EngineError
from tonic.kernel.driver import Program, kernel_argv
from tonic.kernel.pipes import KernelProcess, Pipes, place_channels
from tonic.kernel.protocol import GO, Command
from tonic.procs import become_subreaper
from tonic.results import RunResult, Sink
from tonic.store.ingest import Worker
from tonic.timetravel.planner import Choice, Planner, SnapshotRecord


def _leftovers(env: dict[str, str]) -> Path | None:
    """The run's private folder (the kernel's plan), for the watchdog to remove."""
    plan = env.get("TONIC_KERNEL_PLAN")
    return Path(plan).parent if plan else None


def _shell_status(status: int) -> int:
    """A Popen-style return code from the namespace init's exit status (sh reports a
    child killed by signal N as 128+N; the kernel's exit event corrects real exits)."""
    if 128 < status < 128 + 65:
        return -(status - 128)
    return status


class FreshTree:
    """`unshare` and the namespace it made: node below a shell that is the init."""

    def __init__(self, program: Program, pipes: Pipes, env: dict[str, str]) -> None:
        def prepare() -> None:
            place_channels(pipes)
            deny_io_uring()

        argv = ["unshare", "--pid", "--fork", "setsid", "sh", "-c", '"$@"; exit $?', "tonic"]
        env = dict(env)
        preload = env.pop("LD_PRELOAD", None)
        if preload:
            # Only node loads the clock shim: in the shell it would close fds 3 and 4.
            argv += ["env", f"LD_PRELOAD={preload}"]
        try:
            self.proc = subprocess.Popen(
                [*argv, *kernel_argv(program)],
                stdin=subprocess.DEVNULL,
                stdout=pipes.stdout,
                stderr=pipes.stderr,
                env=env,
                pass_fds=(3, 4),
                preexec_fn=prepare,
            )
        except OSError as err:
            raise EngineError(f"cannot start the kernel: {err.strerror}") from None
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
        return None if code is None else _shell_status(code)

    def wait(self) -> int:
        return _shell_status(self.proc.wait())

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
            self._status = _shell_status(code) if code >= 0 else code
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
    """The pipes on the tree root's fds 1-4, as CRIU names them (`pipe:[inode]`)."""
    names = {}
    for fd, role in ((1, "stdout"), (2, "stderr"), (3, "cmd"), (4, "events")):
        names[role] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return names


class Snapshotter:
    """Dumps the tree at each pause; a detached worker stores the images (ingest.py)."""

    def __init__(self, planner: Planner, criu: criu_tool.Criu, tree: Callable[[], int]) -> None:
        self.planner = planner
        self.criu = criu
        self.tree = tree
        self.worker = Worker(planner.store.root, planner.program.path)
        self.failed: str | None = None
        self.dump_seconds: list[float] = []
        self.rss: list[int] = []
        self.policy = Policy(planner)

    def pause(self, record: SnapshotRecord) -> None:
        if self.failed is not None or not self.policy.due(record.pause):
            return
        staging = Path(tempfile.mkdtemp(prefix="tonic-dump-", dir=self.planner.staging()))
        try:
            os.chmod(staging, 0o700)
            root = self.tree()
            record.pipes = pipe_names(root)
            self.rss.append(tree_rss(root))
            self.dump_seconds.append(criu_tool.dump(self.criu, root, staging))
            self.worker.submit(record.snapshot_id, record.key, staging, record.meta())
        except (EngineError, OSError) as err:
            shutil.rmtree(staging, ignore_errors=True)
            self.failed = f"snapshots stopped at cell {record.pause}: {err}"

    def close(self) -> None:
        self.worker.release()


class CriuEngine:
    name = "criu"
    description = "CRIU snapshot after every cell; an edit resumes from the longest valid prefix"

    def availability(self) -> Availability:
        criu, why = criu_tool.availability()
        return Availability(criu is not None, why)

    def planner(self, program: Program) -> Planner:
        """The snapshots' keys and lookup for `program`."""
        return Planner(program, engine=self.name)

    def run(self, program: Program, sink: Sink, *, timeout: float | None = None) -> RunResult:
        criu = criu_tool.require()
        become_subreaper()
        planner = self.planner(program)

        def attempt(choice: Choice | None, out: Sink, continued: bool) -> RunResult:
            return self._run(planner, criu, choice, out, timeout, continued)

        return run_with_snapshots(planner, sink, attempt)

    def _run(
        self,
        planner: Planner,
        criu: criu_tool.Criu,
        choice: Choice | None,
        sink: Sink,
        timeout: float | None,
        stop_on_error: bool,
    ) -> RunResult:
        planner.prepare_files(choice)
        tree: FreshTree | RestoredTree | None = None
        restore_seconds = 0.0
        watchdogs: list[Watchdog] = []

        def launch(prog: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
            nonlocal tree, restore_seconds
            if choice is None:
                tree = FreshTree(prog, pipes, env)
                watchdogs.append(Watchdog(tree.init_pid(), _leftovers(env)))
                return tree
            inherit = {
                pipes.stdout: choice.record.pipes["stdout"],
                pipes.stderr: choice.record.pipes["stderr"],
                pipes.cmd: choice.record.pipes["cmd"],
                pipes.events: choice.record.pipes["events"],
            }
            try:
                pid, restore_seconds = planner.restore(choice, criu, inherit)
            except EngineError as err:
                raise RestoreError(f"the snapshot after cell {choice.pause}: {err}") from None
            tree = RestoredTree(pid)
            watchdogs.append(Watchdog(pid, _leftovers(env)))
            return tree

        def root() -> int:
            assert tree is not None
            return tree.init_pid()

        snap = Snapshotter(planner, criu, root)

        def on_pause(k: int) -> Command:
            record = planner.record_at(k)
            if record is not None:
                snap.pause(record)
            return GO

        try:
            result = run_kernel_with_snapshots(
                planner,
                sink,
                choice,
                engine=self.name,
                timeout=timeout,
                stop_on_error=stop_on_error,
                on_pause=on_pause,
                launcher=launch,
            )
        finally:
            for watchdog in watchdogs:  # the kernel has ended: tonic did it
                watchdog.disarm()
            snap.close()
            planner.files_done()
        result.stats = {
            "dump_seconds": snap.dump_seconds,
            "rss_bytes": snap.rss,
            "restore_seconds": restore_seconds if choice is not None else None,
        }
        return finish(planner, result, choice, restore_seconds, snap.failed)
