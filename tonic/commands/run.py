"""`tonic run FILE`: run a notebook and show it, or behave exactly as `node FILE`."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tonic import launch, settings
from tonic.engines import engine_for
from tonic.errors import CellTimeoutError, TonicError
from tonic.kernel.program import program_for
from tonic.kernel.stdio import Stdio
from tonic.results import CellResult, NullSink, RunResult, Sink

if TYPE_CHECKING:
    from tonic.view import ViewSink


class PlainSink:
    """Passes the notebook's bytes straight through, as node would have written them."""

    def output(self, stream: int, data: bytes) -> None:
        out = sys.stdout.buffer if stream == 1 else sys.stderr.buffer
        out.write(data)
        out.flush()

    def cell_done(self, result: CellResult) -> None:
        pass

    def cell_started(self, result: CellResult) -> None:
        pass


def main(
    path: Path,
    *,
    plain: bool,
    as_json: bool,
    engine: str | None,
    timeout: float | None,
    args: list[str],
    image: str | None,
) -> None:
    """`tonic run` as typed: check the options, run, and exit as node did (`exit_like_node`)."""
    if plain and as_json:
        raise TonicError("--plain and --json cannot be combined")
    if image is not None:
        if engine not in (None, "docker"):
            raise TonicError("--image is for the docker engine (--engine docker)")
        engine = "docker"
    code = run(
        path, plain=plain, as_json=as_json, engine=engine, timeout=timeout, args=args, image=image
    )
    exit_like_node(code)


def run(
    path: Path,
    *,
    plain: bool,
    as_json: bool,
    engine: str | None,
    timeout: float | None,
    args: list[str],
    image: str | None = None,
) -> int:
    """One run, shown as asked; node's exit status (negative: the signal it died of)."""
    result = execute(
        path, plain=plain, as_json=as_json, engine=engine, timeout=timeout, args=args, image=image
    )
    if result.timed_out:
        raise CellTimeoutError(timeout_message(result, timeout))
    return result.exit_code if result.signal is None else -result.signal


def execute(
    path: Path,
    *,
    plain: bool,
    as_json: bool,
    engine: str | None,
    timeout: float | None,
    args: list[str],
    image: str | None = None,
    fold_restored: bool = False,
) -> RunResult:
    """Run the notebook once and show it (the view, --plain or --json); the view folds
    runs of restored cells into a line each with `fold_restored` (`tonic watch`)."""
    # node's stdout and stderr are like this process's, unless --json captures them;
    # node writes a file itself only with --plain (else the view draws its output).
    stdio = None if as_json else Stdio.like(files=plain)
    program = program_for(path, plain=plain, args=args, stdin=stdin_file(), stdio=stdio)
    nb = program.notebook
    # Snapshots cannot hold what a notebook reads from a pipe (a file's content is keyed).
    fallback = "replay" if stdin_is_stream() else None
    given = settings.load(program.path, options={"engine": engine, "image": image})
    chosen, note = engine_for(given, default=fallback)
    if fallback and not given.engine and note is None:
        note = (
            "stdin is a pipe: snapshots cannot hold what the notebook reads from it, so "
            "this run uses the replay engine and does not resume (a file on stdin can: "
            "`tonic run FILE < input`)"
        )
    view: ViewSink | None = None
    sink: Sink
    if plain:
        sink = PlainSink()
    elif as_json:
        sink = NullSink()
    else:
        from rich.console import Console  # only the view needs rich (~15 ms to import)

        from tonic.notebook.uncapture import Uncapture
        from tonic.view import ViewSink

        fix = Uncapture(program.instrumented, program.path)  # the view captures values
        console = Console(highlight=False, soft_wrap=True)
        view = ViewSink(console, nb, program.path, fix, fold_restored=fold_restored)
        sink = view
    if view is not None:
        for text in [*nb.warnings, *([note] if note else [])]:
            view.note(text)
    try:
        result = chosen.run(program, sink, timeout=timeout)
    finally:
        if view is not None:
            view.stop()
    if view is not None:
        view.finish(result)  # the engine's own notes (the choice of engine came first)
    elif as_json:
        if note:
            result.notes.insert(0, note)
        sys.stdout.write(json.dumps(_json(result, program.path), indent=2) + "\n")
    for problem in result.problems:
        sys.stderr.write(f"tonic: {problem}\n")
    sys.stderr.flush()
    return result


def stdin_is_stream() -> bool:
    """True when stdin is a pipe or a socket (not a terminal, /dev/null or a file)."""
    try:
        st = os.fstat(0)
    except OSError:
        return False
    return stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)


def stdin_file() -> str | None:
    """The regular file stdin is, if it is one."""
    try:
        if stat.S_ISREG(os.fstat(0).st_mode):
            return os.readlink("/proc/self/fd/0")
    except OSError:
        pass
    return None


def _json(result: RunResult, path: Path) -> dict[str, object]:
    return {"file": str(path), **result.to_json()}


def timeout_message(result: RunResult, timeout: float | None) -> str:
    where = "the event loop after the last cell"
    if result.stuck_cell is not None:
        span = result.result_for(result.stuck_cell).cell.span
        where = f"cell {result.stuck_cell} (lines {span.start_line}-{span.end_line})"
    return f"{where} did not finish within {timeout:g} s (--timeout); the run was stopped"


def exit_like_node(code: int) -> None:
    """Exit with node's status; a node killed by a signal makes us die of the same one."""
    launch.exit_with(code)
