"""One run of a notebook for its page: as `tonic run --json` runs it (node's stdout and
stderr are pipes that tonic reads, values recorded), each change handed to the page as
it happens."""

from __future__ import annotations

import codecs

from tonic import settings
from tonic.engines import engine_for
from tonic.errors import TonicError
from tonic.kernel.program import program_for
from tonic.live.state import LiveNotebook
from tonic.notebook.uncapture import Uncapture
from tonic.results import AFTER, CellResult, RunResult, ending


class _Stream:
    """A stream's bytes as text to show now: as they come, or in whole lines where the
    value captures must come out of them first (notebook/uncapture.py)."""

    def __init__(self, fix: Uncapture) -> None:
        self.fix = fix
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.rest = bytearray()

    def take(self, data: bytes) -> str:
        if not self.fix.active:
            return self.decoder.decode(data)
        self.rest += data
        end = self.rest.rfind(b"\n") + 1
        done = self.rest[:end]
        del self.rest[:end]
        return self.decoder.decode(bytes(self.fix.data(done))) if done else ""


class LiveSink:
    """Hands each cell's start, output and end to its page."""

    def __init__(self, nb: LiveNotebook, fix: Uncapture) -> None:
        self.nb = nb
        self.current: int | str = AFTER
        self.streams = {1: _Stream(fix), 2: _Stream(fix)}

    def cell_started(self, result: CellResult) -> None:
        self.current = result.cell.index
        self.nb.started(result)

    def output(self, stream: int, data: bytes) -> None:
        text = self.streams[stream].take(data)
        if text:
            self.nb.output(self.current, stream, text)

    def cell_done(self, result: CellResult) -> None:
        self.current = AFTER
        for stream in self.streams.values():
            stream.rest.clear()  # the cell's whole output comes with it
        self.nb.done(result)


def run_once(
    nb: LiveNotebook, why: str, *, engine: str | None, timeout: float | None, args: list[str]
) -> RunResult | None:
    """Run the notebook for its page; None when it could not start (the page says why)."""
    try:
        program = program_for(nb.path, plain=False, args=args)
        chosen, note = engine_for(settings.load(program.path, options={"engine": engine}))
        nb.begin(program.notebook, why)
        result = chosen.run(
            program, LiveSink(nb, Uncapture(program.instrumented, nb.path)), timeout=timeout
        )
    except TonicError as err:
        nb.failed(str(err), why)
        return None
    nb.finished(result, summary(result, why), [*([note] if note else []), *result.notes])
    return result


def summary(result: RunResult, why: str) -> str:
    """The line under the cells: why it ran, what ran, how it ended."""
    ran = sum(1 for r in result.cells if r.status in ("ok", "error") and r.origin != "restored")
    parts = [why, f"{result.restored} restored, {ran} ran in {result.seconds:.2f} s"]
    if result.saved_seconds >= 0.01:
        parts.append(f"{result.saved_seconds:.2f} s saved")
    parts.append(ending(result))
    return " · ".join(parts)
