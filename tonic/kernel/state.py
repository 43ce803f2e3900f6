"""The state of one kernel run: every cell's record, updated from the kernel's output and
events, and passed on to the sink as it happens."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tonic.kernel.protocol import Command, Error, Eval, Hello, Pause, Setup
from tonic.notebook.uncapture import Uncapture
from tonic.results import CellResult, RunResult, Sink, Tail, show_finished, uncaptured

if TYPE_CHECKING:
    from tonic.kernel.driver import Program


@dataclass(frozen=True)
class Resume:
    """A kernel restored while blocked at pause `pause`: what cells 1..pause produced,
    and the command that answers that pause."""

    pause: int
    cells: tuple[CellResult, ...]
    command: Command
    setup: Setup | None = None  # sent first: this run's environment (observing engines)


class RunState:
    """State of one kernel run, updated from the kernel's output and events."""

    def __init__(
        self,
        program: Program,
        sink: Sink,
        engine: str,
        resume: Resume | None = None,
        *,
        at_once: bool = False,
    ) -> None:
        """`at_once`: show restored cells before the kernel goes on (node writes a file
        itself, after them; an aborted run takes back all it and tonic wrote there)."""
        self.program = program
        self.sink = sink
        self.uncapture = Uncapture(program.instrumented, program.path)
        nb = program.notebook
        self.results = [
            CellResult(cell, status="not-run" if cell.runs else "empty") for cell in nb.cells
        ]
        self.code = sorted(program.instrumented.pauses)
        self.result = RunResult(nb, engine, self.results, Tail(), split=nb.clean)
        self.last_pause = 0
        self.current: CellResult | None = None
        # A kernel restored to continue with an edited file first checks it (an early
        # error, a missing name: the run is aborted, unseen); the restored cells are shown,
        # and what it printed meanwhile (a dying shell's words), once it says it goes on.
        self.unshown: tuple[CellResult, ...] | None = None
        self.held: list[tuple[int, bytes, bool]] = []
        if resume is not None:
            for done in resume.cells:
                self.results[done.cell.index - 1] = done
            self.unshown = resume.cells
            self.last_pause = resume.pause
            self.result.restored = len(resume.cells)
            checked = isinstance(resume.command, Eval) and resume.command.check is not None
            if at_once or not checked:
                self.going_on()
        else:
            self._advance()

    def going_on(self) -> None:
        """The kernel runs this notebook's code: show the restored cells first."""
        if self.unshown is None:
            return
        for done in self.unshown:
            show_finished(self.sink, done)
        self.unshown = None
        self._advance()
        held, self.held = self.held, []
        for stream, data, shown in held:
            self.output(stream, data, shown)

    def _advance(self) -> None:
        at = bisect.bisect_right(self.code, self.last_pause)  # the first code cell after it
        self.current = self.results[self.code[at] - 1] if at < len(self.code) else None
        if self.current is not None:
            self.sink.cell_started(self.current)

    def output(self, stream: int, data: bytes, shown: bool = False) -> None:
        """Output of the kernel's; `shown`: it is where it belongs already (a file node
        wrote itself), only to be recorded."""
        if self.unshown is not None:
            self.held.append((stream, data, shown))
            return
        if self.current is not None:
            target = self.current.stdout if stream == 1 else self.current.stderr
        else:
            target = self.result.tail.stdout if stream == 1 else self.result.tail.stderr
        target += data
        if not shown:
            self.sink.output(stream, data)

    def hello(self, event: Hello) -> None:
        if event.typescript == "":
            self.result.notes.append(
                "this node runs TypeScript files as JavaScript; node 22.18 and later strip "
                "their types"
            )

    def paused(self, event: Pause) -> None:
        res = self.results[event.cell - 1]
        res.status = "ok"
        res.ms = event.ms
        res.value = None if event.value == "undefined" else event.value  # (not "'undefined'")
        res.mime = dict(event.mime)
        if event.modules is not None:
            res.modules = list(event.modules)
        if event.seen is not None:
            res.uses = dict.fromkeys(event.seen.tokens(str(self.program.path)))
        self.last_pause = event.cell
        self.sink.cell_done(uncaptured(res, self.uncapture))
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
        if self.result.aborted is None:
            self.going_on()
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
        uncaptured(self.result.tail, self.uncapture)
        if self.current is not None and self.current.status != "not-run":
            self.sink.cell_done(uncaptured(self.current, self.uncapture))
        return self.result
