"""Starts node with the kernel preloaded and drives it from pause to pause.

The kernel talks over two pipes on its fds 3 (commands, tonic -> kernel) and 4 (events,
kernel -> tonic), in the messages of protocol.py. The notebook's stdout and stderr are
pipes read here; at each pause everything already in them belongs to the cells before it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tonic.errors import EngineError
from tonic.kernel.pipes import KernelProcess, Pipes, close_all, end, place_channels, write_all
from tonic.kernel.protocol import GO, Command, Error, Pause, Setup, encode
from tonic.kernel.relay import Relay
from tonic.kernel.stdio import MERGED, Stdio, open_channels
from tonic.notebook.cells import Notebook
from tonic.notebook.instrument import Instrumented
from tonic.procs import parent_death_signal
from tonic.results import CellResult, RunResult, Sink, Tail, show_finished
from tonic.settings import node_binary


def kernel_file(name: str) -> Path:
    return Path(str(resources.files("tonic") / "kernel" / name))


@dataclass(frozen=True)
class Program:
    """What to run: the notebook, how it is instrumented, node's arguments, and the
    environment and working directory it runs with (by default this process's)."""

    notebook: Notebook
    path: Path
    instrumented: Instrumented
    args: tuple[str, ...] = ()
    inspect: bool = False  # record completion values and error descriptions
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), hash=False)
    cwd: Path = field(default_factory=Path.cwd)
    stdin: str | None = None  # the regular file that is stdin (node reads it as its own)
    stdio: Stdio = field(
        default_factory=Stdio
    )  # what node's stdout and stderr are (default: two pipes)


class _Run:
    """State of one kernel run, updated from the kernel's output and events."""

    def __init__(
        self, program: Program, sink: Sink, engine: str, resume: Resume | None = None
    ) -> None:
        self.program = program
        self.sink = sink
        nb = program.notebook
        self.results = [
            CellResult(cell, status="not-run" if cell.runs else "empty") for cell in nb.cells
        ]
        self.code = list(program.instrumented.pauses)
        self.result = RunResult(nb, engine, self.results, Tail(), split=nb.clean)
        self.last_pause = 0
        self.current: CellResult | None = None
        self.reported_exit: int | None = None
        if resume is not None:
            for done in resume.cells:
                self.results[done.cell.index - 1] = done
                show_finished(self.sink, done)
            self.last_pause = resume.pause
            self.result.restored = len(resume.cells)
        self._advance()

    def _advance(self) -> None:
        later = [i for i in self.code if i > self.last_pause]
        self.current = self.results[later[0] - 1] if later else None
        if self.current is not None:
            self.sink.cell_started(self.current)

    def output(self, stream: int, data: bytes, shown: bool = False) -> None:
        """Output of the kernel's; `shown`: it is where it belongs already (a file
        node wrote itself), only to be recorded."""
        if self.current is not None:
            target = self.current.stdout if stream == 1 else self.current.stderr
        else:
            target = self.result.tail.stdout if stream == 1 else self.result.tail.stderr
        target += data
        if not shown:
            self.sink.output(stream, data)

    def paused(self, event: Pause) -> None:
        res = self.results[event.cell - 1]
        res.status = "ok"
        res.ms = event.ms
        res.value = event.value
        if event.modules is not None:
            res.modules = list(event.modules)
        if event.seen is not None:
            res.uses = dict.fromkeys(event.seen.tokens(str(self.program.path)))
        self.last_pause = event.cell
        self.sink.cell_done(res)
        self._advance()

    def errored(self, event: Error) -> None:
        if self.current is None:
            self.result.tail.error = event.error
            return
        self.current.status = "error"
        self.current.error = event.error
        self.current.ms = event.ms

    def timed_out(self) -> None:
        self.result.timed_out = True
        self.result.stuck_cell = self.current.cell.index if self.current else None

    def finish(self, exit_code: int, sig: int | None) -> RunResult:
        self.result.exit_code = exit_code
        self.result.signal = sig
        # The body may have ended inside the current cell: process.exit(), a top-level
        # return, or a pending top-level await. Its output so far is its own.
        if (
            self.current is not None
            and self.current.status == "not-run"
            and (self.current.stdout or self.current.stderr or exit_code != 0)
        ):
            self.current.status = "error" if exit_code != 0 else "ok"
        if self.current is not None and self.current.status != "not-run":
            self.sink.cell_done(self.current)
        return self.result


# A pause hook sees the cell index and returns the command to answer the pause with.
PauseHook = Callable[[int], Command]
# A launcher starts the kernel with the given pipes (fds in tonic's process) and plan.
Launcher = Callable[[Program, Pipes, dict[str, str]], KernelProcess]


def go_on(_cell: int) -> Command:
    """The pause hook of a run without snapshots: every pause is answered with "go"."""
    return GO


@dataclass(frozen=True)
class Resume:
    """A kernel restored while blocked at pause `pause`: what cells 1..pause produced,
    and the command that answers that pause."""

    pause: int
    cells: tuple[CellResult, ...]
    command: Command
    setup: Setup | None = None  # sent first: this run's environment (observing engines)


def spawn(
    argv: list[str],
    program: Program,
    pipes: Pipes,
    env: dict[str, str],
    prepare: Callable[[], None],
    what: str,
    *,
    stdin: int | None = None,
) -> subprocess.Popen[bytes]:
    """`argv` (ending in node and the kernel) in the program's working directory, with
    the kernel's pipes as its stdout, stderr and fds 3 and 4; `prepare` runs between fork
    and exec, after the channels are in place; stdin is tonic's unless `stdin` says
    otherwise. `what` names it in the error when it cannot start."""

    def child() -> None:
        place_channels(pipes)
        prepare()

    try:
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=pipes.stdout,
            stderr=subprocess.STDOUT if pipes.stderr == MERGED else pipes.stderr,
            env=env,
            cwd=program.cwd,
            pass_fds=(3, 4),
            preexec_fn=child,
        )
    except OSError as err:
        raise EngineError(f"cannot start {what}: {err.strerror}") from None


def popen_launcher(program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
    """node as tonic's child; it dies with tonic, even of SIGKILL (PDEATHSIG)."""
    argv = kernel_argv(program)
    die_with_us = parent_death_signal(signal.SIGKILL)
    return spawn(argv, program, pipes, env, die_with_us, f"node ({argv[0]})")


@dataclass(frozen=True)
class KernelOptions:
    """How a run differs from a plain one (the replay engine's: all defaults).

    `on_pause` answers each pause; `on_hello` hears that the kernel is in place, before
    the notebook's first line (in snapshot runs the kernel waits until it returns);
    `on_save` keeps what is at a path the notebook is about to change; `launcher`
    starts the process; `env_overrides` are
    set for node and hidden from the notebook's `process.env` again by the kernel.
    `snapshots` asks the kernel for what a snapshot engine needs (how node exited, the
    modules each cell loaded); `clock_shim` says that node runs with the clock shim
    preloaded. `resume`: the launcher restores a kernel blocked at that pause.
    `stop_on_error`: at the first uncaught error, kill the kernel and mark the run
    aborted. `channels`: the launcher made the kernel's channels itself (FIFOs into a
    container): tonic's ends.
    """

    on_pause: PauseHook = go_on
    on_hello: Callable[[], object] = lambda: None
    on_save: Callable[[str], None] = lambda _path: None
    launcher: Launcher = popen_launcher
    env_overrides: dict[str, str] = field(default_factory=dict)
    resume: Resume | None = None
    snapshots: bool = False
    clock_shim: bool = False
    stop_on_error: bool = False
    channels: Callable[[KernelProcess], Pipes] | None = None


def kernel_argv(program: Program) -> list[str]:
    return [node_binary(), "-r", str(kernel_file("kernel.js")), str(program.path), *program.args]


def write_plan(
    program: Program,
    directory: Path,
    env: dict[str, str | None],
    snapshots: bool = False,
    clock_shim: bool = False,
) -> Path:
    """The kernel's instructions, in a private file it reads once at start."""
    plan = {
        "file": str(program.path),
        "kind": program.notebook.kind.kind,
        "source": program.instrumented.source.decode("utf-8"),
        "values": list(program.instrumented.values),
        "inspect": program.inspect,
        "env": env,
        "snapshots": snapshots,
        "shim": clock_shim,
    }
    path = directory / "plan.json"
    path.write_text(json.dumps(plan), encoding="utf-8")
    return path


def _kernel_env(program: Program, directory: Path, options: KernelOptions) -> dict[str, str]:
    """node's environment: the program's, the overrides, and the plan (written to `directory`)
    that tells the kernel what to run and which variables to hide again."""
    env = dict(program.env)
    hidden: dict[str, str | None] = {}
    for name, value in options.env_overrides.items():
        hidden[name] = program.env.get(name)
        env[name] = value
    plan = write_plan(program, directory, hidden, options.snapshots, options.clock_shim)
    env["TONIC_KERNEL_PLAN"] = str(plan)
    return env


def run_kernel(
    program: Program,
    sink: Sink,
    *,
    engine: str,
    timeout: float | None = None,
    options: KernelOptions | None = None,
) -> RunResult:
    """Run the notebook once in a fresh kernel (or, with `options.resume`, a restored
    one); stream to `sink`; return every cell's record."""
    opts = options or KernelOptions()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="tonic-kernel-"))
    os.chmod(tmp, 0o700)
    channels = open_channels(program.stdio)
    ours, kernel_ends, files = channels.ours, channels.theirs, channels.files
    theirs: Pipes | None = kernel_ends
    proc: KernelProcess | None = None
    try:
        proc = opts.launcher(program, kernel_ends, _kernel_env(program, tmp, opts))
        close_all(kernel_ends)
        theirs = None
        if opts.channels is not None:
            close_all(ours)
            ours = opts.channels(proc)
        # Only now does the sink see anything: a launcher that fails leaves it untouched.
        state = _Run(program, sink, engine, opts.resume)
        if opts.resume is not None:
            for appended in files.values():
                appended.rebase()  # the restored cells' output, which tonic wrote
            if opts.resume.setup is not None:
                write_all(ours.cmd, encode(opts.resume.setup))
            write_all(ours.cmd, encode(opts.resume.command))
        Relay(proc, state, ours, files, timeout, opts).run()
        if state.result.aborted:
            for appended in files.values():
                appended.rewind()  # it runs again: what it wrote is written again
        code = proc.wait()
        if state.reported_exit is not None and code < 0:
            # node exited normally (it said so): a status of 128+N was its exit code.
            code = 128 - code
        result = state.finish(code if code >= 0 else 128 - code, -code if code < 0 else None)
        result.seconds = time.monotonic() - started
        return result
    finally:
        if proc is not None:
            end(proc)
        if theirs is not None:
            close_all(theirs)
        close_all(ours)
        for appended in files.values():
            appended.close()
        shutil.rmtree(tmp, ignore_errors=True)
