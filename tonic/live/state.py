"""What the page of one notebook shows, kept as its runs go, and sent to its viewers.

The notebook's runs happen in the command's thread; the pages' event streams are served
from the web server's event loop. Each change is applied here under a lock, then handed
to every viewer's queue through its loop (`call_soon_threadsafe`): a page that connects
gets the whole state first, then every change after it, none twice, none lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3

from tonic.export.page import cell_view, environment
from tonic.notebook.cells import Cell, Notebook
from tonic.results import AFTER, CellResult, RunResult

Event = dict[str, Any]


def digest(data: bytes) -> str:
    return blake3(data).hexdigest()


def _text(data: bytearray | str | None) -> str:
    if not data:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


@dataclass
class Viewer:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event]

    def send(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


class LiveNotebook:
    """One notebook's page: its cells as last parsed, each cell's state in the run going
    on or the last one, and the line under them."""

    def __init__(self, path: Path, number: int) -> None:
        self.path = path
        self.number = number  # its place on the command line: its page is /n/NUMBER
        self.lock = threading.Lock()
        self.viewers: list[Viewer] = []
        self.notebook: Notebook | None = None
        self.version = ""  # the digest of the bytes its cells were parsed from
        self.views: dict[int, dict[str, object]] = {}  # cell index -> what the page shows
        self.status = "starting"
        self.problem = ""  # why the last run could not start (node's report)
        self.tail: list[dict[str, object]] = []  # output after the last cell
        self.notes: list[str] = []  # what the engine wants the user to know

    @property
    def name(self) -> str:
        return self.path.name

    # -- the run's side ------------------------------------------------------------------

    def begin(self, notebook: Notebook, why: str) -> None:
        """A run of these cells starts: every cell waits."""
        with self.lock:
            self.notebook, self.version, self.problem = notebook, digest(notebook.data), ""
            self.views = {}
            for cell in notebook.cells:
                view = self._view(CellResult(cell), state="pending")
                if view is not None:
                    self.views[cell.index] = view
            self.tail = []
            self.status = f"{why} · running"
            self._reset()

    def started(self, result: CellResult) -> None:
        with self.lock:
            view = self._view(result, state="running", started=time.time() * 1000)
            self._cell(result.cell.index, view)

    def output(self, index: int | str, stream: int, text: str) -> None:
        kind = "stdout" if stream == 1 else "stderr"
        with self.lock:
            parts = self.tail if index == AFTER else self._outputs(index)
            if parts is None:
                return
            if parts and parts[-1]["kind"] == kind:
                parts[-1]["text"] = str(parts[-1]["text"]) + text
            else:
                parts.append({"kind": kind, "text": text, "folded": False})
            self._send({"t": "out", "cell": index, "kind": kind, "text": text})

    def done(self, result: CellResult) -> None:
        with self.lock:
            self._cell(result.cell.index, self._view(result, state="done"))

    def finished(self, result: RunResult, summary: str, notes: list[str]) -> None:
        with self.lock:
            tail = result.tail
            error = tail.error if tail.error and not tail.stderr else ""
            parts = [("stdout", _text(tail.stdout)), ("stderr", _text(tail.stderr) + error)]
            self.tail = [
                {"kind": kind, "text": text.rstrip("\n"), "folded": False}
                for kind, text in parts
                if text
            ]
            for view in self.views.values():  # the cells that did not start: not run
                if view.get("state") == "pending":
                    view["state"] = "done"
            self.status, self.notes = summary, notes
            self._reset()

    def failed(self, problem: str, why: str) -> None:
        """A run could not start (a syntax error: node's report); the cells stay as the
        last run left them."""
        with self.lock:
            self.problem = problem
            self.status = f"{why} · did not run"
            self._reset()

    # -- the pages' side -----------------------------------------------------------------

    def watch(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Event]) -> Viewer:
        """A new viewer, whose queue starts with the whole page."""
        viewer = Viewer(loop, queue)
        with self.lock:
            queue.put_nowait(self._whole())
            self.viewers.append(viewer)
        return viewer

    def unwatch(self, viewer: Viewer) -> None:
        with self.lock:
            if viewer in self.viewers:
                self.viewers.remove(viewer)

    def body(self) -> dict[str, object]:
        """The page's cells, line and problem, as the template takes them."""
        with self.lock:
            return self._body()

    def cell(self, index: int) -> tuple[Cell, str] | None:
        """A code cell of the last parse, and the digest of the bytes it came from."""
        with self.lock:
            if self.notebook is None:
                return None
            for cell in self.notebook.cells:
                if cell.index == index and cell.type == "code":
                    return cell, self.version
            return None

    # -- inside the lock -----------------------------------------------------------------

    def _view(self, result: CellResult, **extra: object) -> dict[str, object] | None:
        view = cell_view(result, _text, self.path.parent)
        if view is not None:
            view.update(extra, origin=result.origin if result.status != "not-run" else "")
        return view

    def _outputs(self, index: int | str) -> list[dict[str, object]] | None:
        view = self.views.get(index) if isinstance(index, int) else None
        outputs = view.get("outputs") if view is not None else None
        return outputs if isinstance(outputs, list) else None

    def _cell(self, index: int, view: dict[str, object] | None) -> None:
        if view is None:
            return
        self.views[index] = view
        html = environment().get_template("cell.html.j2").module.cell(view)  # type: ignore[attr-defined]
        self._send({"t": "cell", "cell": index, "html": str(html)})

    def _body(self) -> dict[str, object]:
        return {
            "cells": list(self.views.values()),
            "tail": self.tail,
            "status": self.status,
            "problem": self.problem,
            "notes": self.notes,
            "version": self.version,
        }

    def _whole(self) -> Event:
        html = environment().get_template("live-body.html.j2").render(**self._body())
        return {"t": "reset", "html": html, "version": self.version}

    def _reset(self) -> None:
        self._send(self._whole())

    def _send(self, event: Event) -> None:
        for viewer in self.viewers:
            viewer.send(event)
