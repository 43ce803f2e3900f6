"""`tonic cells FILE`: show how tonic splits a notebook, and what each cell declares."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tonic.notebook.cells import Cell, Notebook
from tonic.notebook.loader import load, node_check


def cells(path: Path, *, as_json: bool) -> int:
    source, nb = load(path)
    if not nb.typescript:  # (`node --check` does not strip types: node reports them as it runs)
        node_check(source)
    if as_json:
        sys.stdout.write(json.dumps(to_json(nb, str(source.path)), indent=2) + "\n")
        return 0
    _table(nb, str(path))
    return 0


def to_json(nb: Notebook, path: str) -> dict[str, object]:
    return {
        "file": path,
        "kind": nb.kind.kind,
        "kind_reason": nb.kind.reason,
        "format": nb.format,
        "clean": nb.clean,
        "warnings": list(nb.warnings),
        "cells": [c.to_json() for c in nb.cells],
    }


def _table(nb: Notebook, path: str) -> None:
    console = Console(highlight=False)
    console.print(
        Text(
            f"{path}: {len(nb.cells)} cells, {nb.kind.kind} ({nb.kind.reason}), {nb.format} format",
            style="bold",
        )
    )
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("lines", no_wrap=True)
    table.add_column("type")
    table.add_column("title or first line", no_wrap=True, overflow="ellipsis", max_width=32)
    table.add_column("declares", min_width=20)
    table.add_column("requires")
    for cell in nb.cells:
        span = cell.span
        declares = ", ".join(f"{d.kind} {d.name}" for d in cell.declarations)
        requires = ", ".join(d.specifier for d in cell.dependencies)
        table.add_row(
            str(cell.index),
            f"{span.start_line}-{span.end_line}",
            cell.type,
            Text(_headline(cell)),
            Text(declares),
            Text(requires),
        )
    console.print(table)
    for warning in nb.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"), soft_wrap=True)
    if nb.unsplit is not None:
        console.print(
            Text(f"warning: {nb.unsplit}; this file would run as one piece", style="yellow")
        )


def _headline(cell: Cell) -> str:
    if cell.title:
        return cell.title
    body = cell.prose if cell.prose is not None else cell.source
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    return lines[0] if lines else ""
