"""Runs a notebook "for the record", as `tonic check` and `tonic export` need it.

The run is `tonic run`'s notebook view (values recorded) through the default engine, so an
unchanged notebook shows its stored run without starting node, and an edited one resumes
from its snapshots. It runs from the notebook's own folder, and without the variables
git and pre-commit set for hooks (GIT_AUTHOR_DATE changes with every commit, and the
environment is part of a snapshot's key): a hook's second run finds the first one's
snapshots. Both are the `Program`'s: nothing of this process (its environment, its
working directory) changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tonic import settings
from tonic.engines import engine_for
from tonic.kernel.driver import Program
from tonic.kernel.program import program_for
from tonic.results import NullSink, RunResult

# What git (for every hook) and the pre-commit framework add to a hook's environment.
HOOK_VARIABLES = frozenset(
    {
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
        "GIT_EDITOR",
        "GIT_EXEC_PATH",
        "GIT_INDEX_FILE",
        "GIT_PREFIX",
        "GIT_REFLOG_ACTION",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "PRE_COMMIT",
    }
)
HOOK_PREFIXES = ("PRE_COMMIT_",)
ERROR_LINE_RE = re.compile(r"^(?:[A-Za-z_$][\w$]*(?:Error|Exception)|Error)\b.*")


def record_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without hook variables (git's exec path leaves PATH too), and with an
    absolute TONIC_CACHE (the notebook runs in its own folder)."""
    clean = {
        name: value
        for name, value in env.items()
        if name not in HOOK_VARIABLES and not name.startswith(HOOK_PREFIXES)
    }
    exec_path = env.get("GIT_EXEC_PATH")
    if exec_path and "PATH" in clean:
        parts = clean["PATH"].split(os.pathsep)
        clean["PATH"] = os.pathsep.join(p for p in parts if p != exec_path)
    cache = clean.get("TONIC_CACHE")
    if cache and not os.path.isabs(cache):
        clean["TONIC_CACHE"] = os.path.abspath(cache)
    return clean


def record_program(path: Path) -> Program:
    """The program of a recorded run: view mode, from the notebook's own folder, in
    this process's environment without hook variables."""
    resolved = Path(path).resolve()
    return program_for(
        path,
        plain=False,
        args=[],
        env=record_environment(os.environ),
        cwd=resolved.parent,
    )


def record(path: Path, *, timeout: float | None = None) -> RunResult:
    """Run the notebook at `path` in view mode through the default engine."""
    program = record_program(path)
    engine, _ = engine_for(settings.load(program.path))
    return engine.run(program, NullSink(), timeout=timeout)


@dataclass(frozen=True)
class Failure:
    """Why a recorded run is not a success: where (a cell, or after the last) and what."""

    where: str | None  # 'cell 2 "load" (lines 4-9)', 'after the last cell', None: the run
    what: str  # the error's first line, or the exit code
    at: str | None = None  # file:line:col of the throw in the notebook, when known

    def describe(self) -> str:
        at = f" at {self.at}" if self.at else ""
        return f"{self.where}: {self.what}{at}" if self.where else f"{self.what}{at}"


def error_summary(text: str) -> str:
    """The `TypeError: ...` line of an error report (node's or the kernel's)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if ERROR_LINE_RE.match(line):
            return line.strip()
    return lines[0].strip() if lines else "an error"


def error_location(text: str, path: Path, shown: str) -> tuple[str, int] | None:
    """(`shown:line:col` or `shown:line`, line) of the first mention of the notebook."""
    pattern = re.compile(
        r"(?:file://)?" + re.escape(str(path)) + r":(?P<line>\d+)(?::(?P<col>\d+))?"
    )
    m = pattern.search(text)
    if m is None:
        return None
    line = int(m.group("line"))
    col = m.group("col")
    return (f"{shown}:{line}:{col}" if col else f"{shown}:{line}"), line


def cell_label(result: RunResult, index: int) -> str:
    cell = result.result_for(index).cell
    title = f' "{cell.title}"' if cell.title else ""
    return f"cell {index}{title} (lines {cell.span.start_line}-{cell.span.end_line})"


def cell_at_line(result: RunResult, line: int) -> int | None:
    for cr in result.cells:
        if cr.cell.span.start_line <= line <= cr.cell.span.end_line:
            return cr.cell.index
    return None


def failure(result: RunResult, path: Path, shown: str, timeout: float | None) -> Failure | None:
    """The first thing that makes a run fail: a cell that threw, a timeout, an error after
    the last cell (or before the first: node's syntax errors), or a non-zero exit."""
    if result.timed_out:
        where = (
            cell_label(result, result.stuck_cell)
            if result.stuck_cell is not None
            else "after the last cell"
        )
        return Failure(where, f"did not finish within {timeout:g} s (--timeout)")
    for cr in result.cells:
        if cr.status == "error":
            text = cr.error or cr.stderr.decode("utf-8", "replace")
            loc = error_location(text + "\n" + cr.stderr.decode("utf-8", "replace"), path, shown)
            return Failure(
                cell_label(result, cr.cell.index), error_summary(text), loc[0] if loc else None
            )
    tail = result.tail
    if tail.error:
        loc = error_location(tail.error, path, shown)
        where = "after the last cell"
        if loc is not None:
            index = cell_at_line(result, loc[1])
            ran = any(cr.status in ("ok", "error") for cr in result.cells)
            if index is not None and not ran:
                where = cell_label(result, index)  # node refused the file: a syntax error
        return Failure(where, error_summary(tail.error), loc[0] if loc else None)
    if result.signal is not None:
        return Failure(None, f"node was killed by signal {result.signal}")
    if result.exit_code != 0:
        return Failure(None, f"exited with code {result.exit_code} (process.exit or exitCode)")
    return None
