"""The terminal notebook view: each cell with its lines, output, value, error and time.

The only module that draws on the terminal for `tonic run` without --plain/--json.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tonic.notebook.cells import Cell, Notebook
from tonic.notebook.uncapture import Uncapture
from tonic.results import CellResult, RunResult, beside, ending

STATUS_MARK = {
    "ok": ("✓", "green"),
    "error": ("✗", "bold red"),
    "not-run": ("·", "dim"),
    "empty": ("·", "dim"),
}


def _ms(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _text(data: bytearray) -> str:
    return data.decode("utf-8", "replace")


def _lines(cell: Cell) -> str:
    s = cell.span
    if s.start_line == s.end_line:
        return f"line {s.start_line}"
    return f"lines {s.start_line}-{s.end_line}"


def _size(path: str) -> str:
    try:
        n = os.path.getsize(path)
    except OSError:
        return "removed"
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} kB" if n < 10**6 else f"{n / 1e6:.1f} MB"


def _provenance(result: CellResult, notebook: Path | None) -> str:
    """What the cell read and wrote, as observed ("read data.json · wrote out.txt, 12 B")."""

    def shown(path: str) -> str:
        return beside(path, notebook.parent) if notebook is not None else path

    read = [shown(path) for path in result.read_only()]
    parts = []
    if read:
        parts.append("read " + ", ".join(sorted(read)))
    if result.wrote:
        parts.append("wrote " + ", ".join(f"{shown(p)} ({_size(p)})" for p in result.wrote))
    return " · ".join(parts)


class _Running:
    """The status line under a running cell: which cell, and for how long (re-rendered
    by rich's Live several times a second)."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.started = time.monotonic()

    def __rich__(self) -> Text:
        line = Text(style="dim")
        line.append(f"▸ [{self.cell.index}] {_lines(self.cell)}")
        if self.cell.title:
            line.append(f"  {self.cell.title}")
        line.append(f"  running {time.monotonic() - self.started:.1f} s")
        return line


class _Lines:
    """A stream's bytes as complete lines (as node would write them without the view's
    value captures), the rest kept for later."""

    def __init__(self, fix: Uncapture | None) -> None:
        self.rest = bytearray()
        self.fix = fix

    def _shown(self, data: bytearray) -> str:
        return _text(self.fix.data(data) if self.fix is not None else data)

    def take(self, data: bytes) -> str:
        self.rest += data
        end = self.rest.rfind(b"\n")
        if end == -1:
            return ""
        done = self.rest[:end]
        del self.rest[: end + 1]
        return self._shown(done)

    def flush(self) -> str:
        done, self.rest = self.rest, bytearray()
        return self._shown(done.rstrip(b"\n")) if done else ""


class ViewSink:
    """Draws each cell as it runs: a cell that prints while it runs gets its header at
    its first output, the output as it comes, and its mark and time when it ends; one
    that is final at once (silent, restored, stored) is drawn whole. On a terminal a
    status line under the output says which cell runs, and for how long."""

    def __init__(
        self,
        console: Console,
        notebook: Notebook,
        path: Path | None = None,
        fix: Uncapture | None = None,
        *,
        fold_restored: bool = False,
    ) -> None:
        self.console = console
        self.notebook = notebook
        self.path = path  # the notebook's file: paths beside it are shown relative
        self.shown = 0  # cells drawn so far, in order
        self.current: CellResult | None = None  # the cell running, as its results come
        self.headed = False  # the current cell's header is out: its output streams
        self.whole = False  # the current cell was final when it started: drawn when done
        self.tail_headed = False  # output after the last cell streams under its header
        self.streams = {1: _Lines(fix), 2: _Lines(fix)}
        self.live: Live | None = None
        # `tonic watch`: each run of restored cells is one line, drawn before what follows
        self.fold_restored = fold_restored
        self.folded: list[CellResult] = []

    def output(self, stream: int, data: bytes) -> None:
        current = self.current
        if current is not None and self.whole:
            return  # a final cell (restored, stored): drawn whole when it is done
        self._unfold()
        if current is not None and not self.headed:
            self.console.print(self._head(current.cell, "▸", "bold"))
            self.headed = True
        elif current is None and not self.tail_headed:
            self._prose_until(len(self.notebook.cells) + 1)
            self.console.print(Text("after the last cell (event loop)", style="bold"))
            self.tail_headed = True
        self._print(stream, self.streams[stream].take(data))

    def _print(self, stream: int, text: str) -> None:
        if text:
            self.console.print(Text(text, style="red" if stream == 2 else ""))

    def _flush(self) -> None:
        for stream, lines in self.streams.items():
            self._print(stream, lines.flush())

    def note(self, text: str) -> None:
        self.console.print(Text(f"note: {text}", style="yellow"))

    def cell_started(self, result: CellResult) -> None:
        self._prose_until(result.cell.index)
        self.current = result
        self.headed = False
        self.whole = result.status != "not-run"
        if not self.whole and self.console.is_terminal:
            self.live = Live(
                _Running(result.cell),
                console=self.console,
                transient=True,
                refresh_per_second=8,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.live.start()

    def stop(self) -> None:
        """End the status line (the run is over, or failed)."""
        if self.live is not None:
            self.live.stop()
            self.live = None

    def cell_done(self, result: CellResult) -> None:
        self.stop()
        if self._folds(result):
            self.folded.append(result)
            self.shown = max(self.shown, result.cell.index)  # with the prose before it
            self.current = None
            return
        self._prose_until(result.cell.index)
        if self.headed and result is self.current:
            self._flush()
            self._foot(result)
        else:
            self._draw(result)
        self.current = None
        self.headed = False
        self.shown = max(self.shown, result.cell.index)

    def _folds(self, result: CellResult) -> bool:
        return self.fold_restored and result.origin == "restored" and result.cell.runs

    def _unfold(self) -> None:
        """The restored cells folded so far, as one line."""
        if not self.folded:
            return
        first, last = self.folded[0].cell.index, self.folded[-1].cell.index
        line = Text()
        line.append(f"✓ [{first}]" if first == last else f"✓ [{first}-{last}]", style="green")
        ms = sum(r.ms or 0.0 for r in self.folded)
        line.append(f"  restored, {_ms(ms)} of cells not run again", style="magenta")
        self.console.print(line)
        self.folded = []

    def _prose_until(self, index: int) -> None:
        if self.notebook.cells[self.shown : index - 1]:
            self._unfold()
        for cell in self.notebook.cells[self.shown : index - 1]:
            if cell.type == "markdown" and cell.prose:
                self.console.print(Text(cell.prose, style="italic"))
                self.console.print()
            self.shown = cell.index

    def _head(self, cell: Cell, mark: str, style: str) -> Text:
        head = Text()
        head.append(f"{mark} [{cell.index}] ", style=style)
        head.append(_lines(cell), style="bold")
        if cell.title:
            head.append(f"  {cell.title}", style="bold cyan")
        return head

    def _state(self, head: Text, result: CellResult) -> Text:
        if result.ms is not None:
            head.append(f"  {_ms(result.ms)}", style="dim")
        if result.status == "not-run":
            head.append("  not run", style="dim")
        elif result.status == "empty":
            head.append("  no code", style="dim")
        if result.origin == "restored":
            head.append("  restored", style="magenta")
        return head

    def _draw(self, result: CellResult) -> None:
        if self._folds(result):
            self.folded.append(result)
            return
        self._unfold()
        mark, style = STATUS_MARK.get(result.status, ("?", ""))
        self.console.print(self._state(self._head(result.cell, mark, style), result))
        self._body(result.stdout, result.stderr, result.error)
        self._after(result)

    def _foot(self, result: CellResult) -> None:
        """The end of a cell whose output streamed: its mark, time and what follows."""
        mark, style = STATUS_MARK.get(result.status, ("?", ""))
        foot = Text()
        foot.append(f"{mark} [{result.cell.index}]", style=style)
        self.console.print(self._state(foot, result))
        if result.error and not result.stderr:
            self.console.print(Text(result.error.rstrip("\n"), style="red"))
        self._after(result)

    def _after(self, result: CellResult) -> None:
        if result.value is not None:
            self.console.print(Text("=> " + result.value, style="cyan"))
        provenance = _provenance(result, self.path)
        if provenance:
            self.console.print(Text(provenance, style="dim"))

    def _body(self, stdout: bytearray, stderr: bytearray, error: str | None) -> None:
        if stdout:
            self.console.print(Text(_text(stdout).rstrip("\n")))
        if stderr:
            self.console.print(Text(_text(stderr).rstrip("\n"), style="red"))
        elif error:
            self.console.print(Text(error.rstrip("\n"), style="red"))

    def finish(self, result: RunResult) -> None:
        self.stop()
        self._flush()
        if self.current is not None and self.headed:  # stopped inside it (a timeout)
            self._foot(self.current)
            self.shown = self.current.cell.index
        for res in result.cells[self.shown :]:
            if res.cell.type == "markdown":
                if res.cell.prose:
                    self._unfold()
                    self.console.print(Text(res.cell.prose, style="italic"))
                continue
            self._draw(res)
        self._unfold()
        self.shown = len(result.cells)
        tail = result.tail
        if not result.split:
            why = result.notebook.unsplit or "it could not be split"
            self.console.print(Text(f"tonic ran this file as one piece: {why}", style="yellow"))
        if self.tail_headed:
            # (node's report is in what streamed, on stderr or on the one channel of both)
            if tail.error and tail.error.strip() not in _text(tail.stdout + tail.stderr):
                self.console.print(Text(tail.error.rstrip("\n"), style="red"))
        elif tail.stdout or tail.stderr or tail.error:
            self.console.print(Text("after the last cell (event loop)", style="bold"))
            self._body(tail.stdout, tail.stderr, tail.error)
        ran = sum(1 for r in result.cells if r.status in ("ok", "error"))
        code = sum(1 for r in result.cells if r.cell.runs)
        summary = Text(style="dim")
        summary.append(f"{ran}/{code} cells ran · {ending(result)}")
        summary.append(f" · {result.seconds:.2f} s · engine {result.engine}")
        if result.restored:
            summary.append(f" · {result.restored} restored, {result.saved_seconds:.2f} s saved")
        self.console.print(summary)
        for note in result.notes:
            self.note(note)
