"""Starts node with the kernel preloaded and drives it from pause to pause.

The kernel talks over two FIFOs in a private directory: events (kernel -> tonic, JSON
lines) and commands (tonic -> kernel). The notebook's stdout and stderr are pipes read
here; at each pause everything already in them belongs to the cells before it.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tonic.cells import Notebook
from tonic.errors import EngineError
from tonic.instrument import Instrumented
from tonic.results import CellResult, RunResult, Sink, Tail

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

    def __init__(self, program: Program, sink: Sink, engine: str) -> None:
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

    def paused(self, event: dict[str, object]) -> None:
        index = int(str(event["cell"]))
        res = self.results[index - 1]
        res.status = "ok"
        res.ms = float(str(event.get("ms", 0.0)))
        value = event.get("value")
        res.value = value if isinstance(value, str) else None
        self.last_pause = index
        self.sink.cell_done(res)
        self._advance()

    def errored(self, event: dict[str, object]) -> None:
        error = event.get("error")
        text = error if isinstance(error, str) else None
        if self.current is None:
            self.result.tail.error = text
            return
        self.current.status = "error"
        self.current.error = text
        ms = event.get("ms")
        self.current.ms = float(ms) if isinstance(ms, int | float) else None

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


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def run_kernel(
    program: Program, sink: Sink, *, engine: str, timeout: float | None = None
) -> RunResult:
    """Run the notebook once in a fresh kernel; stream to `sink`; return every cell's record."""
    node = node_binary()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="tonic-kernel-"))
    os.chmod(tmp, 0o700)
    cmd_path, ev_path = tmp / "cmd", tmp / "events"
    os.mkfifo(cmd_path, 0o600)
    os.mkfifo(ev_path, 0o600)
    # O_RDWR: opening never blocks, and the kernel's opens find a peer at once.
    cmd_fd = os.open(cmd_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    ev_fd = os.open(ev_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    plan = {
        "file": str(program.path),
        "kind": program.notebook.kind.kind,
        "source": program.instrumented.source.decode("utf-8"),
        "values": list(program.instrumented.values),
        "inspect": program.inspect,
        "cmd": str(cmd_path),
        "events": str(ev_path),
    }
    plan_path = tmp / "plan.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    env = dict(os.environ)
    env["TONIC_KERNEL_PLAN"] = str(plan_path)
    state = _Run(program, sink, engine)
    proc: subprocess.Popen[bytes] | None = None
    try:
        try:
            proc = subprocess.Popen(
                [node, "-r", str(kernel_file("kernel.js")), str(program.path), *program.args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as err:
            raise EngineError(f"cannot start node ({node}): {err.strerror}") from None
        _pump(proc, state, cmd_fd, ev_fd, timeout)
        code = proc.wait()
        result = state.finish(code if code >= 0 else 128 - code, -code if code < 0 else None)
        result.seconds = time.monotonic() - started
        return result
    finally:
        if proc is not None:
            _kill(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        os.close(cmd_fd)
        os.close(ev_fd)
        shutil.rmtree(tmp, ignore_errors=True)


def _pump(
    proc: subprocess.Popen[bytes],
    state: _Run,
    cmd_fd: int,
    ev_fd: int,
    timeout: float | None,
) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    for fd in streams:
        os.set_blocking(fd, False)
    sel = selectors.DefaultSelector()
    for fd in streams:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(ev_fd, selectors.EVENT_READ)
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
                if fd != ev_fd:
                    drain(fd)
                    continue
                try:
                    pending += os.read(ev_fd, READ_SIZE)
                except BlockingIOError:
                    continue
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    event = json.loads(line)
                    kind = event.get("ev")
                    if kind == "pause":
                        for out_fd in list(open_streams):
                            drain(out_fd)
                        state.paused(event)
                        os.write(cmd_fd, b'{"op":"go"}\n')
                        if timeout is not None:
                            deadline = time.monotonic() + timeout
                    elif kind == "error":
                        for out_fd in list(open_streams):
                            drain(out_fd)
                        state.errored(event)
    finally:
        sel.close()
