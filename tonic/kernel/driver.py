"""Starts node with the kernel preloaded and drives it from pause to pause.

The kernel talks over two pipes on its fds 3 (commands, tonic -> kernel) and 4 (events,
kernel -> tonic), in the messages of protocol.py. The notebook's stdout and stderr are
pipes read here; at each pause everything already in them belongs to the cells before it.
"""

from __future__ import annotations

import json
import os
import selectors
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
from tonic.kernel.pipes import (
    KernelProcess,
    Pipes,
    close_all,
    end,
    open_pipes,
    place_channels,
    write_all,
)
from tonic.kernel.protocol import (
    GO,
    SAVED,
    Command,
    Error,
    Event,
    Hello,
    Pause,
    Save,
    Setup,
    decode_event,
    encode,
)
from tonic.notebook.cells import Notebook
from tonic.notebook.instrument import Instrumented
from tonic.procs import parent_death_signal
from tonic.results import CellResult, RunResult, Sink, Tail, show_finished
from tonic.settings import node_argv0, node_binary

READ_SIZE = 1 << 16


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

    def output(self, stream: int, data: bytes) -> None:
        if self.current is not None:
            target = self.current.stdout if stream == 1 else self.current.stderr
        else:
            target = self.result.tail.stdout if stream == 1 else self.result.tail.stderr
        target += data
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
    keep: tuple[int, ...] = (),
    executable: str | None = None,
) -> subprocess.Popen[bytes]:
    """`argv` (ending in node and the kernel) in the program's working directory, with
    the kernel's pipes as its stdout, stderr and fds 3 and 4 (and the fds in `keep`, at
    their numbers); `prepare` runs between fork and exec, after the channels are in
    place; stdin is tonic's unless `stdin` says otherwise; `executable`: the file run,
    if not argv[0]. `what` names it in the error when it cannot start."""

    def child() -> None:
        place_channels(pipes)
        prepare()

    try:
        return subprocess.Popen(
            argv,
            executable=executable,
            stdin=stdin,
            stdout=pipes.stdout,
            stderr=pipes.stderr,
            env=env,
            cwd=program.cwd,
            pass_fds=(3, 4, *keep),
            preexec_fn=child,
        )
    except OSError as err:
        raise EngineError(f"cannot start {what}: {err.strerror}") from None


def popen_launcher(program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
    """node as tonic's child; it dies with tonic, even of SIGKILL (PDEATHSIG)."""
    node, *rest = kernel_argv(program)
    die_with_us = parent_death_signal(signal.SIGKILL)
    argv = [node_argv0(), *rest]
    return spawn(argv, program, pipes, env, die_with_us, f"node ({node})", executable=node)


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
    """node's command line, with node's path first (started as `node_argv0()`)."""
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
    ours, kernel_ends = open_pipes()
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
            if opts.resume.setup is not None:
                write_all(ours.cmd, encode(opts.resume.setup))
            write_all(ours.cmd, encode(opts.resume.command))
        _Relay(proc, state, ours, timeout, opts).run()
        code = proc.wait()
        result = state.finish(code if code >= 0 else 128 - code, -code if code < 0 else None)
        result.seconds = time.monotonic() - started
        return result
    finally:
        if proc is not None:
            end(proc)
        if theirs is not None:
            close_all(theirs)
        close_all(ours)
        shutil.rmtree(tmp, ignore_errors=True)


class _Relay:
    """Relays output and events until the kernel's stdout and stderr close (or, with
    `stop_on_error`, until the first uncaught error: the run is then marked aborted).
    A timeout counts from the start and again from each pause."""

    def __init__(
        self,
        proc: KernelProcess,
        state: _Run,
        ours: Pipes,
        timeout: float | None,
        options: KernelOptions,
    ) -> None:
        self.proc = proc
        self.state = state
        self.ours = ours
        self.timeout = timeout
        self.on_pause = options.on_pause
        self.on_hello = options.on_hello
        self.on_save = options.on_save
        self.snapshots = options.snapshots
        self.stop_on_error = options.stop_on_error
        self.streams = {ours.stdout: 1, ours.stderr: 2}
        self.open_streams = set(self.streams)
        self.pending = b""
        self.deadline: float | None = None
        self.sel = selectors.DefaultSelector()

    def run(self) -> None:
        ours = self.ours
        for fd in (*self.streams, ours.events, ours.cmd):
            os.set_blocking(fd, False)
        for fd in (*self.streams, ours.events):
            self.sel.register(fd, selectors.EVENT_READ)
        self._rearm()
        try:
            while self.open_streams:
                deadline = self.deadline
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready = self.sel.select(wait)
                if not ready and deadline is not None and time.monotonic() >= deadline:
                    self.state.timed_out()
                    end(self.proc)
                    self._drain_all()
                    return
                for key, _ in ready:
                    fd = int(key.fd)
                    if fd != ours.events:
                        if fd in self.open_streams:  # it may have closed at a pause
                            self._drain(fd)
                    elif not self._read_events():
                        return
        finally:
            self.sel.close()

    def _rearm(self) -> None:
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout

    def _drain(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self.sel.unregister(fd)
                self.open_streams.discard(fd)
                return
            self.state.output(self.streams[fd], data)

    def _drain_all(self) -> None:
        for fd in list(self.open_streams):
            self._drain(fd)

    def _read_events(self) -> bool:
        """Handle the complete event lines that arrived; False when the run stops here."""
        try:
            chunk = os.read(self.ours.events, READ_SIZE)
        except BlockingIOError:
            return True
        if not chunk:
            self.sel.unregister(self.ours.events)
            return True
        self.pending += chunk
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            if not self._handle(decode_event(line)):
                return False
        return True

    def _handle(self, event: Event) -> bool:
        if isinstance(event, Pause):
            self._drain_all()
            self.state.paused(event)
            write_all(self.ours.cmd, encode(self.on_pause(event.cell)))
            self._rearm()
        elif isinstance(event, Save):
            self.on_save(event.path)
            write_all(self.ours.cmd, SAVED)
        elif isinstance(event, Hello):
            self.on_hello()
            if self.snapshots:  # the kernel waits for it before the first cell
                write_all(self.ours.cmd, encode(GO))
        elif isinstance(event, Error):
            if self.stop_on_error:
                self.state.result.aborted = True
                end(self.proc)
                return False
            self._drain_all()
            self.state.errored(event)
        return True
