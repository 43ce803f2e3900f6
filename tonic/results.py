"""What a run produced, cell by cell, and the sink that sees it as it happens."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from tonic.errors import CellTimeoutError
from tonic.notebook.cells import Cell, Notebook
from tonic.notebook.uncapture import Uncapture

# Where output goes that no cell produced: after the last cell, while node's event loop
# runs timers and callbacks (or after a top-level `return`).
AFTER = "after"
# A value's shape as a tree (kernel.js tree()): the pages show it, --json keeps the text.
TREE = "application/vnd.tonic.tree+json"


@dataclass
class CellResult:
    """One cell's record. Filled in while the kernel runs; final once `status` is set."""

    cell: Cell
    status: str = "not-run"  # ok | error | not-run | empty (no statements to run)
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    value: str | None = None
    error: str | None = None
    ms: float | None = None
    origin: str = "executed"  # executed | restored (snapshot engines)
    modules: list[str] = field(default_factory=list)  # files its require() loaded
    # What it used of its surroundings, as observed (timetravel/deps.py), and the paths
    # it wrote (snapshot engines that observe).
    uses: dict[str, str | None] = field(default_factory=dict)
    wrote: list[str] = field(default_factory=list)
    # The value's rich forms (kernel.js rich()): MIME type to text or "base64:..."
    mime: dict[str, str] = field(default_factory=dict)

    def read_only(self) -> list[str]:
        """The files it was seen to read, but those it wrote (absolute paths)."""
        return [t[5:] for t in self.uses if t.startswith("file:") and t[5:] not in self.wrote]

    def to_json(self) -> dict[str, object]:
        mime = {k: v for k, v in self.mime.items() if k != TREE}  # the page's alone
        rich = {"mime": mime} if mime else {}
        return {
            "index": self.cell.index,
            "type": self.cell.type,
            "title": self.cell.title,
            "lines": [self.cell.span.start_line, self.cell.span.end_line],
            "status": self.status,
            "origin": self.origin,
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "value": self.value,
            "error": self.error,
            "ms": None if self.ms is None else round(self.ms, 3),
            "read": sorted(t.partition(":")[2] for t in self.uses if t.startswith("file:")),
            "env": sorted(t.partition(":")[2] for t in self.uses if t.startswith("env:")),
            "wrote": list(self.wrote),
            **rich,
        }


@dataclass
class Tail:
    """Output after the last cell (event loop), and an error raised there."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "error": self.error,
        }


@dataclass
class RunResult:
    notebook: Notebook
    engine: str
    cells: list[CellResult]
    tail: Tail
    exit_code: int = 0
    signal: int | None = None
    split: bool = True  # False when the file ran as one piece (Notebook.unsplit says why)
    seconds: float = 0.0
    timed_out: bool = False
    stuck_cell: int | None = None  # the cell running when --timeout stopped the run
    restored: int = 0  # cells whose results came from a snapshot
    saved_seconds: float = 0.0  # run time of the restored cells, less the restore
    notes: list[str] = field(default_factory=list)  # what the engine wants the user to know
    # what tonic must say even where nothing but node's output is shown: one line each
    # on stderr after the run, in every view (e.g. the cache's disk is full)
    problems: list[str] = field(default_factory=list)
    stats: dict[str, object] = field(default_factory=dict)  # engine measurements
    aborted: str | None = None  # why a continued run stopped unseen (it runs afresh)
    stored: bool = False  # the stored run of this exact notebook, shown: nothing ran

    def result_for(self, index: int) -> CellResult:
        return self.cells[index - 1]

    def to_json(self) -> dict[str, object]:
        nb = self.notebook
        return {
            "engine": self.engine,
            "kind": nb.kind.kind,
            "format": nb.format,
            "split": self.split,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "seconds": round(self.seconds, 3),
            "restored": self.restored,
            "saved_seconds": round(self.saved_seconds, 3),
            "warnings": list(nb.warnings),  # about the split (notebook/cells.py)
            "notes": list(self.notes),
            "stats": self.stats,
            "cells": [c.to_json() for c in self.cells],
            AFTER: self.tail.to_json(),
        }


R = TypeVar("R", CellResult, Tail)


def uncaptured(res: R, fix: Uncapture) -> R:
    """A finished cell's (or the tail's) texts as node would have written them, without
    the view's value captures (notebook/uncapture.py)."""
    res.stdout, res.stderr = fix.data(res.stdout), fix.data(res.stderr)
    res.error = fix.optional(res.error)
    if isinstance(res, CellResult):
        res.value = fix.optional(res.value)
    return res


class Sink(Protocol):
    """Sees a run as it happens: raw output bytes, and each cell once it is final."""

    def output(self, stream: int, data: bytes) -> None: ...

    def cell_done(self, result: CellResult) -> None: ...

    def cell_started(self, result: CellResult) -> None: ...


def show_finished(sink: Sink, result: CellResult) -> None:
    """Pass a cell that is already final (restored or stored) to a sink, as if it ran."""
    sink.cell_started(result)
    show_output(sink, result.stdout, result.stderr)
    sink.cell_done(result)


def show_output(sink: Sink, stdout: bytearray, stderr: bytearray) -> None:
    for stream, data in ((1, stdout), (2, stderr)):
        if data:
            sink.output(stream, bytes(data))


class NullSink:
    def output(self, stream: int, data: bytes) -> None:
        pass

    def cell_done(self, result: CellResult) -> None:
        pass

    def cell_started(self, result: CellResult) -> None:
        pass


def ending(result: RunResult) -> str:
    """How the run ended, with the exit code tonic exits with: node's own code, node's
    signal (which tonic dies of too: 128 + N in a shell), or --timeout (124)."""
    if result.timed_out:
        return f"stopped by --timeout · exit code {CellTimeoutError.exit_code}"
    if result.signal:
        try:
            name = signal.Signals(result.signal).name
        except ValueError:
            name = f"signal {result.signal}"
        return f"node died of {name} · exit code {128 + result.signal}"
    return f"exit code {result.exit_code}"


def beside(path: str, folder: Path) -> str:
    """`path` relative to `folder` when it lies inside it, else as it is."""
    base = str(folder) + os.sep
    return path[len(base) :] if path.startswith(base) else path
