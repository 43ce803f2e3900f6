"""The terminal notebook view: each cell with its lines, output, value, error and time.

The only module that draws on the terminal for `tonic run` without --plain/--json.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.text import Text

from tonic.notebook.cells import Cell, Notebook
from tonic.notebook.instrument import VALUE_PREFIX
from tonic.results import CellResult, RunResult

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


def _clean(data: bytearray) -> str:
    # The view may have captured values; hide that instrumentation in node's error reports.
    return data.replace(VALUE_PREFIX, b"").decode("utf-8", "replace")


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
    base = str(notebook.parent) + "/" if notebook is not None else None

    def shown(path: str) -> str:
        return path[len(base) :] if base and path.startswith(base) else path

    read = [
        shown(t[5:]) for t in result.uses if t.startswith("file:") and t[5:] not in result.wrote
    ]
    parts = []
    if read:
        parts.append("read " + ", ".join(sorted(read)))
    if result.wrote:
        parts.append("wrote " + ", ".join(f"{shown(p)} ({_size(p)})" for p in result.wrote))
    return " · ".join(parts)


class ViewSink:
    """Draws each cell as soon as it is final, and prose cells in between."""

    def __init__(self, console: Console, notebook: Notebook, path: Path | None = None) -> None:
        self.console = console
        self.notebook = notebook
        self.path = path  # the notebook's file: paths beside it are shown relative
        self.shown = 0  # cells drawn so far, in order

    def output(self, stream: int, data: bytes) -> None:
        pass

    def note(self, text: str) -> None:
        self.console.print(Text(f"note: {text}", style="yellow"))

    def cell_started(self, result: CellResult) -> None:
        self._prose_until(result.cell.index)

    def cell_done(self, result: CellResult) -> None:
        self._prose_until(result.cell.index)
        self._draw(result)
        self.shown = max(self.shown, result.cell.index)

    def _prose_until(self, index: int) -> None:
        for cell in self.notebook.cells[self.shown : index - 1]:
            if cell.type == "markdown" and cell.prose:
                self.console.print(Text(cell.prose, style="italic"))
                self.console.print()
            self.shown = cell.index

    def _draw(self, result: CellResult) -> None:
        cell = result.cell
        mark, style = STATUS_MARK.get(result.status, ("?", ""))
        head = Text()
        head.append(f"{mark} [{cell.index}] ", style=style)
        head.append(_lines(cell), style="bold")
        if cell.title:
            head.append(f"  {cell.title}", style="bold cyan")
        if result.ms is not None:
            head.append(f"  {_ms(result.ms)}", style="dim")
        if result.status == "not-run":
            head.append("  not run", style="dim")
        elif result.status == "empty":
            head.append("  no code", style="dim")
        if result.origin == "restored":
            head.append("  restored", style="magenta")
        self.console.print(head)
        self._body(result.stdout, result.stderr, result.error)
        if result.value is not None:
            self.console.print(Text("=> " + result.value, style="cyan"))
        provenance = _provenance(result, self.path)
        if provenance:
            self.console.print(Text(provenance, style="dim"))

    def _body(self, stdout: bytearray, stderr: bytearray, error: str | None) -> None:
        if stdout:
            self.console.print(Text(_clean(stdout).rstrip("\n")))
        if stderr:
            self.console.print(Text(_clean(stderr).rstrip("\n"), style="red"))
        elif error:
            self.console.print(Text(error.rstrip("\n"), style="red"))

    def finish(self, result: RunResult) -> None:
        for res in result.cells[self.shown :]:
            if res.cell.type == "markdown":
                if res.cell.prose:
                    self.console.print(Text(res.cell.prose, style="italic"))
                continue
            self._draw(res)
        self.shown = len(result.cells)
        tail = result.tail
        if not result.split:
            why = result.notebook.unsplit or "it could not be split"
            self.console.print(Text(f"tonic ran this file as one piece: {why}", style="yellow"))
        if tail.stdout or tail.stderr or tail.error:
            self.console.print(Text("after the last cell (event loop)", style="bold"))
            self._body(tail.stdout, tail.stderr, tail.error)
        ran = sum(1 for r in result.cells if r.status in ("ok", "error"))
        code = sum(1 for r in result.cells if r.cell.runs)
        summary = Text(style="dim")
        summary.append(f"{ran}/{code} cells ran · exit code {result.exit_code}")
        if result.signal:
            summary.append(f" (signal {result.signal})")
        summary.append(f" · {result.seconds:.2f} s · engine {result.engine}")
        if result.restored:
            summary.append(f" · {result.restored} restored, {result.saved_seconds:.2f} s saved")
        self.console.print(summary)
        for note in result.notes:
            self.note(note)
