"""Starts node with the kernel preloaded and drives it from pause to pause.

The kernel talks over two pipes on its fds 3 (commands, tonic -> kernel) and 4 (events,
kernel -> tonic), in the messages of protocol.py. The notebook's stdout and stderr are
pipes read here; at each pause everything already in them belongs to the cells before it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from tonic.errors import EngineError
from tonic.kernel.protocol import GO, Command, Error, Exit, Pause, decode_event, encode
from tonic.notebook.cells import Notebook
from tonic.notebook.instrument import Instrumented
from tonic.procs import parent_death_signal
from tonic.results import CellResult, RunResult, Sink, Tail, show_finished

READ_SIZE = 1 << 16


def kernel_file(name: str) -> Path:
    return Path(str(resources.files("tonic") / "kernel" / name))


def node_binary() -> str:
    node = os.environ.get("TONIC_NODE") or shutil.which("node")
    if node is None:
        raise EngineError("node was not found on PATH (or set TONIC_NODE to its path)")
    return node


@dataclass(frozen=True)
class Program:
    """What to run: the notebook, how it is instrumented, and node's arguments."""

    notebook: Notebook
    path: Path
    instrumented: Instrumented
    args: tuple[str, ...] = ()
    inspect: bool = False  # record completion values and error descriptions


class _Run:
    """State of one kernel run, updated by the event loop in `run_kernel`."""

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


class KernelProcess(Protocol):
    """A running kernel (or the process tree around it) that tonic may wait for or end."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...

    def kill(self) -> None: ...


@dataclass(frozen=True)
class Pipes:
    """The kernel's side of its four pipes, as they must appear in its process."""

    cmd: int  # fd 3 in the kernel: tonic -> kernel commands
    events: int  # fd 4 in the kernel: kernel -> tonic events
    stdout: int
    stderr: int


# A pause hook sees the cell index and returns the command to answer the pause with.
PauseHook = Callable[[int], Command]
# A launcher starts the kernel with the given pipes (fds in tonic's process) and plan.
Launcher = Callable[[Program, Pipes, dict[str, str]], KernelProcess]


@dataclass(frozen=True)
class Resume:
    """A kernel restored while blocked at pause `pause`: what cells 1..pause produced,
    and the command that answers that pause."""

    pause: int
    cells: tuple[CellResult, ...]
    command: Command


def _popen_launcher(program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
    """node as tonic's child; it dies with tonic, even of SIGKILL (PDEATHSIG)."""
    node = node_binary()
    die_with_us = parent_death_signal(signal.SIGKILL)

    def prepare() -> None:
        place_channels(pipes)
        die_with_us()

    try:
        return subprocess.Popen(
            kernel_argv(program),
            stdout=pipes.stdout,
            stderr=pipes.stderr,
            env=env,
            pass_fds=(3, 4),
            preexec_fn=prepare,
        )
    except OSError as err:
        raise EngineError(f"cannot start node ({node}): {err.strerror}") from None


def kernel_argv(program: Program) -> list[str]:
    return [node_binary(), "-r", str(kernel_file("kernel.js")), str(program.path), *program.args]


def place_channels(pipes: Pipes) -> None:
    """In the child before exec: put the command and event pipes on fds 3 and 4."""
    cmd, events = os.dup(pipes.cmd), os.dup(pipes.events)
    os.dup2(cmd, 3)
    os.dup2(events, 4)
    os.close(cmd)
    os.close(events)


def _kill(proc: KernelProcess) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


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


def run_kernel(
    program: Program,
    sink: Sink,
    *,
    engine: str,
    timeout: float | None = None,
    on_pause: PauseHook | None = None,
    launcher: Launcher | None = None,
    env_overrides: dict[str, str] | None = None,
    resume: Resume | None = None,
    snapshots: bool = False,
    clock_shim: bool = False,
    stop_on_error: bool = False,
    channels: Callable[[KernelProcess], Pipes] | None = None,
) -> RunResult:
    """Run the notebook once in a fresh kernel; stream to `sink`; return every cell's record.

    `on_pause` answers each pause (default: go on); `launcher` starts the process
    (default: node as a child of tonic); `env_overrides` are set for node and hidden
    from the notebook's `process.env` again by the kernel. `snapshots` asks the kernel
    for what a snapshot engine needs (how node exited, the modules each cell loaded);
    `clock_shim` says that node runs with the clock shim preloaded. `channels`: the
    launcher made the kernel's channels itself (FIFOs into a container): tonic's ends.
    """
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="tonic-kernel-"))
    os.chmod(tmp, 0o700)
    env = dict(os.environ)
    hidden: dict[str, str | None] = {}
    for name, value in (env_overrides or {}).items():
        hidden[name] = os.environ.get(name)
        env[name] = value
    plan = write_plan(program, tmp, hidden, snapshots, clock_shim)
    env["TONIC_KERNEL_PLAN"] = str(plan)
    ours, kernel_ends = open_pipes()
    theirs: Pipes | None = kernel_ends
    proc: KernelProcess | None = None
    try:
        proc = (launcher or _popen_launcher)(program, kernel_ends, env)
        close_all(kernel_ends)
        theirs = None
        if channels is not None:
            close_all(ours)
            ours = channels(proc)
        # Only now does the sink see anything: a launcher that fails leaves it untouched.
        state = _Run(program, sink, engine, resume)
        if resume is not None:
            send(ours, resume.command)
        drive(proc, state, ours, timeout, on_pause or (lambda _k: GO), stop_on_error)
        code = proc.wait()
        if state.reported_exit is not None and code < 0:
            # node exited normally (it said so): a status of 128+N was its exit code.
            code = 128 - code
        result = state.finish(code if code >= 0 else 128 - code, -code if code < 0 else None)
        result.seconds = time.monotonic() - started
        return result
    finally:
        if proc is not None:
            _kill(proc)
        if theirs is not None:
            close_all(theirs)
        close_all(ours)
        shutil.rmtree(tmp, ignore_errors=True)


def open_pipes() -> tuple[Pipes, Pipes]:
    """(tonic's ends, the kernel's ends) of the command, event, stdout and stderr pipes."""
    cmd_r, cmd_w = os.pipe()
    ev_r, ev_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    return Pipes(cmd_w, ev_r, out_r, err_r), Pipes(cmd_r, ev_w, out_w, err_w)


def close_all(pipes: Pipes) -> None:
    for fd in (pipes.cmd, pipes.events, pipes.stdout, pipes.stderr):
        with contextlib.suppress(OSError):
            os.close(fd)


def send(ours: Pipes, command: Command) -> None:
    view = memoryview(encode(command))
    while view:
        try:
            written = os.write(ours.cmd, view)
        except BlockingIOError:
            select.select([], [ours.cmd], [])
            continue
        view = view[written:]


def drive(
    proc: KernelProcess,
    state: _Run,
    ours: Pipes,
    timeout: float | None,
    on_pause: PauseHook,
    stop_on_error: bool = False,
) -> None:
    """Relay output and events until the kernel's stdout and stderr close (or, with
    `stop_on_error`, until the first uncaught error: the run is then marked aborted)."""
    streams = {ours.stdout: 1, ours.stderr: 2}
    for fd in (*streams, ours.events, ours.cmd):
        os.set_blocking(fd, False)
    sel = selectors.DefaultSelector()
    for fd in streams:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(ours.events, selectors.EVENT_READ)
    pending = b""
    open_streams = set(streams)
    deadline = None if timeout is None else time.monotonic() + timeout

    def drain(fd: int) -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                sel.unregister(fd)
                open_streams.discard(fd)
                return
            state.output(streams[fd], data)

    try:
        while open_streams:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = sel.select(wait)
            if not ready and deadline is not None and time.monotonic() >= deadline:
                state.result.timed_out = True
                state.result.stuck_cell = state.current.cell.index if state.current else None
                _kill(proc)
                for fd in list(open_streams):
                    drain(fd)
                return
            for key, _ in ready:
                fd = int(key.fd)
                if fd != ours.events:
                    if fd in open_streams:  # it may have closed while draining for a pause
                        drain(fd)
                    continue
                try:
                    chunk = os.read(ours.events, READ_SIZE)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(ours.events)
                    continue
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    event = decode_event(line)
                    if isinstance(event, Pause):
                        for out_fd in list(open_streams):
                            drain(out_fd)
                        state.paused(event)
                        send(ours, on_pause(event.cell))
                        if timeout is not None:
                            deadline = time.monotonic() + timeout
                    elif isinstance(event, Exit):
                        state.reported_exit = event.code
                    elif isinstance(event, Error):
                        if stop_on_error:
                            state.result.aborted = True
                            _kill(proc)
                            return
                        for out_fd in list(open_streams):
                            drain(out_fd)
                        state.errored(event)
    finally:
        sel.close()
