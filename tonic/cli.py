"""The `tonic` command line: declares options and hands each command to its module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tonic import __version__
from tonic.engines import ENGINES
from tonic.error_handler import error_handler

app = typer.Typer(
    name="tonic",
    help=(
        "Plain Node.js modules as notebooks. A notebook is any .js/.cjs/.mjs file: "
        "`node FILE` and `require()` keep working on it. tonic splits it into cells "
        "(`// %%` markers, or groups of statements separated by blank lines), runs them "
        "in one node process, and shows each cell's output, value, error and time."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ENGINE_HELP = (
    "Engine to run with: "
    + "; ".join(f"{name} ({engine.description})" for name, engine in ENGINES.items())
    + ". Default: $TONIC_ENGINE, else the first that works here (see `tonic doctor`)."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tonic {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    pass


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
    epilog=(
        "Examples:\n\n"
        "  tonic run analysis.js            notebook view in the terminal\n\n"
        "  tonic run --plain analysis.js    exactly what `node analysis.js` prints\n\n"
        "  tonic run --json analysis.js     per-cell results for tools\n\n"
        "  tonic run analysis.js -- a b     arguments for the script (process.argv)"
    ),
)
def run(
    file: Annotated[Path, typer.Argument(help="The notebook: a .js, .cjs or .mjs file.")],
    args: Annotated[
        list[str] | None, typer.Argument(help="Arguments passed to the script after `--`.")
    ] = None,
    plain: Annotated[
        bool,
        typer.Option(
            "--plain",
            help="Print the notebook's stdout and stderr unchanged and exit with its exit "
            "code: byte for byte what `node FILE` does.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print per-cell results as JSON.")
    ] = False,
    engine: Annotated[
        str | None, typer.Option("--engine", "-e", help=ENGINE_HELP, show_default=False)
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Stop a cell (or the event loop after the last cell) that runs longer "
            "than this many seconds.",
            min=0.001,
        ),
    ] = None,
) -> None:
    """Run a notebook: each cell's line range, output, value, error and time."""
    from tonic.commands import run as command
    from tonic.errors import TonicError

    with error_handler():
        if plain and as_json:
            raise TonicError("--plain and --json cannot be combined")
        code = command.run(
            file, plain=plain, as_json=as_json, engine=engine, timeout=timeout, args=args or []
        )
        command.exit_like_node(code)


@app.command()
def cells(
    file: Annotated[Path, typer.Argument(help="The notebook: a .js, .cjs or .mjs file.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print cells, declarations and requires as JSON.")
    ] = False,
) -> None:
    """Show how a notebook splits into cells, with what each cell declares and requires.

    A syntax error is reported as node reports it (file:line and message), exit code 1.
    """
    from tonic.commands import cells as command

    with error_handler():
        code = command.cells(file, as_json=as_json)
    raise typer.Exit(code)


@app.command()
def doctor() -> None:
    """Say which engines work on this machine, and why the others do not."""
    from tonic.commands import doctor as command

    with error_handler():
        code = command.doctor()
    raise typer.Exit(code)


@app.command()
def why(
    file: Annotated[Path, typer.Argument(help="The notebook: a .js, .cjs or .mjs file.")],
    engine: Annotated[
        str | None, typer.Option("--engine", "-e", help=ENGINE_HELP, show_default=False)
    ] = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="Judge the snapshots `tonic run --plain` uses.")
    ] = False,
) -> None:
    """Explain, cell by cell, which snapshot the next run would resume from, and what
    broke the longer prefixes (an edited cell, a changed module, the environment)."""
    from tonic.commands import why as command

    with error_handler():
        code = command.why(file, engine=engine, plain=plain)
    raise typer.Exit(code)


cache_app = typer.Typer(
    help="The snapshot cache: $TONIC_CACHE, else $XDG_CACHE_HOME/tonic (private, 0700).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
def cache_ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the snapshots: notebook, cell, age and size, and the cache's totals."""
    from tonic.commands import cache as command

    with error_handler():
        command.ls(as_json=as_json)


@cache_app.command("gc")
def cache_gc(
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size",
            help="Also drop the oldest snapshots until the cache "
            "is at most this big (e.g. 500M, 2G).",
        ),
    ] = None,
) -> None:
    """Remove snapshots of notebooks that no longer exist, and unreferenced data."""
    from tonic.commands import cache as command

    with error_handler():
        command.gc(max_size=max_size)


@cache_app.command("clear")
def cache_clear() -> None:
    """Remove every snapshot and stored run."""
    from tonic.commands import cache as command

    with error_handler():
        command.clear()


def main() -> None:
    app()
