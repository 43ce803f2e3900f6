"""The `tonic` command line: declares options and hands each command to its module."""

from __future__ import annotations

import functools
import signal
from pathlib import Path
from typing import Annotated

import click
import typer
import typer.main

from tonic import __version__, cli_groups
from tonic.engine_catalog import DESCRIPTIONS
from tonic.error_handler import handled

NOTEBOOK_HELP = "The notebook: a .js, .cjs or .mjs file (or .ts, .cts, .mts)."

app = typer.Typer(
    name="tonic",
    help=(
        "Plain Node.js modules as notebooks. A notebook is any .js/.cjs/.mjs file (or "
        ".ts/.cts/.mts, on a node that strips types: 22.18 and later): "
        "`node FILE` and `require()` keep working on it. tonic splits it into cells "
        "(`// %%` markers, or groups of statements separated by blank lines), runs them "
        "in one node process, and shows each cell's output, value, error and time."
    ),
    no_args_is_help=True,
    add_completion=False,
    suggest_commands=False,  # click (>= 8.2) suggests a mistyped command's name itself
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ENGINE_HELP = (
    "Engine to run with: "
    + "; ".join(f"{name} ({text})" for name, text in DESCRIPTIONS.items())
    + '. Default: $TONIC_ENGINE, else the package.json "tonic": {"engine": ...} of the '
    "project, else the first that works here (see `tonic doctor`)."
)


EngineOption = Annotated[
    str | None, typer.Option("--engine", "-e", help=ENGINE_HELP, show_default=False)
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        help="Stop a cell (or the event loop after the last cell) that runs longer "
        "than this many seconds.",
        min=0.001,
    ),
]
HtmlOption = Annotated[
    bool,
    typer.Option(
        "--html",
        help="Write one self-contained HTML page of the notebook's recorded run instead "
        "(code, prose, outputs, values, errors); an unchanged notebook runs nothing.",
    ),
]
ArgsArgument = Annotated[
    list[str] | None, typer.Argument(help="Arguments passed to the script after `--`.")
]


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
        "  tonic run analysis.js -- a b     arguments for the script (process.argv)\n\n"
        "  tonic run -e docker analysis.js  in a container of its own (isolation)"
    ),
)
@handled
def run(
    file: Annotated[Path, typer.Argument(help=NOTEBOOK_HELP)],
    args: ArgsArgument = None,
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
    engine: EngineOption = None,
    timeout: TimeoutOption = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            help="The docker engine's image: any local image with node and /bin/sh "
            "(implies --engine docker; also $TONIC_DOCKER_IMAGE). Default: one built "
            "from this machine's node, so the output equals plain node's.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a notebook: each cell's line range, output, value, error and time."""
    from tonic.commands import run as command

    command.main(
        file,
        plain=plain,
        as_json=as_json,
        engine=engine,
        timeout=timeout,
        args=args or [],
        image=image,
    )


@app.command(
    help=(
        "Run a notebook, then again each time it or a file it read or required is saved."
        "\n\nEach run resumes from the longest prefix of cells still valid and shows the "
        "cells that ran, with their output as it comes; the restored ones are one line, "
        "with the time they would have taken. A save of the same bytes runs nothing. A "
        "file that does not compile shows node's report and the watch goes on. Ctrl-C "
        "ends it, and the run in progress with its kernel."
    ),
    epilog=(
        "Examples:\n\n"
        "  tonic watch analysis.js          run, then again at every save\n\n"
        "  tonic watch analysis.js -- a b   arguments for the script (process.argv)"
    ),
)
@handled
def watch(
    file: Annotated[Path, typer.Argument(help=NOTEBOOK_HELP)],
    args: ArgsArgument = None,
    engine: EngineOption = None,
    timeout: TimeoutOption = None,
) -> int:
    from tonic.commands import watch as command

    return command.main(file, engine=engine, timeout=timeout, args=args or [])


SERVE_HELP = (
    "A live page per notebook in the browser, on 127.0.0.1.\n\nEach notebook runs, then "
    "again at every save of it or of a file it read (as `tonic watch`), and its page shows "
    "each cell's code, output as it comes, value (objects as a tree to open), error with "
    "node's report, time, whether it was restored or ran, and what it read and wrote. "
    "Click a cell's code to edit it; Shift+Enter writes the edit into the file, which then "
    "runs like any save. The URL carries a random token: without it, no page. Ctrl-C "
    "stops."
)
PortOption = Annotated[
    int, typer.Option("--port", "-p", help="The port on 127.0.0.1 (0: a free one).", min=0)
]
FilesArgument = Annotated[
    list[Path], typer.Argument(help="The notebooks: .js, .cjs or .mjs files (or .ts, .cts, .mts).")
]


@app.command(
    help=SERVE_HELP,
    epilog=(
        "Examples:\n\n"
        "  tonic serve analysis.js             the page at the URL printed\n\n"
        "  tonic serve a.js b.js --port 0      two notebooks, on a free port"
    ),
)
@handled
def serve(
    files: FilesArgument,
    port: PortOption = 8765,
    engine: EngineOption = None,
    timeout: TimeoutOption = None,
) -> int:
    from tonic.commands import serve as command

    return command.main(files, port=port, engine=engine, timeout=timeout, args=[])


@app.command(
    name="open",
    help=SERVE_HELP.replace("in the browser", "opened in the browser", 1),
    epilog="Examples:\n\n  tonic open analysis.js              serve it, and open its page",
)
@handled
def open_(
    files: FilesArgument,
    port: PortOption = 0,
    engine: EngineOption = None,
    timeout: TimeoutOption = None,
) -> int:
    from tonic.commands import serve as command

    return command.main(files, port=port, engine=engine, timeout=timeout, args=[], browse=True)


@app.command()
@handled
def cells(
    file: Annotated[Path, typer.Argument(help=NOTEBOOK_HELP)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print cells, declarations and requires as JSON.")
    ] = False,
) -> int:
    """Show how a notebook splits into cells, with what each cell declares and requires.

    A syntax error is reported as node reports it (file:line and message), exit code 1.
    """
    from tonic.commands import cells as command

    return command.cells(file, as_json=as_json)


@app.command()
@handled
def doctor() -> int:
    """Say which engines work here (and why the others do not), and the settings in effect."""
    from tonic.commands import doctor as command

    return command.doctor()


@app.command()
@handled
def why(
    file: Annotated[Path, typer.Argument(help=NOTEBOOK_HELP)],
    engine: Annotated[
        str | None, typer.Option("--engine", "-e", help=ENGINE_HELP, show_default=False)
    ] = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="Judge the snapshots `tonic run --plain` uses.")
    ] = False,
) -> int:
    """Explain, cell by cell, which snapshot the next run would resume from, and what
    broke the longer prefixes (an edited cell, a changed module, the environment)."""
    from tonic.commands import why as command

    return command.why(file, engine=engine, plain=plain)


@app.command(
    help=(
        "Export notebooks as an npm package: package.json (main/exports, type, "
        "dependencies at their installed versions, engines.node, files), a README of the "
        "notebooks' prose, code and recorded outputs, the notebooks unchanged, and every "
        "local module they require.\n\n"
        "The notebooks run first (an unchanged one replays its stored run) and must not "
        "fail. Never exported: .env files, tonic's snapshot cache, and whatever the "
        "project's .gitignore or .npmignore files exclude (requiring such a file is an "
        "error); a symlink out of the project is left out with a warning (one inside is "
        "a copy of its target). A warning names each cell whose recorded output shows "
        "the value of an environment variable or .env entry (see --no-outputs).\n\n"
        "With --html: one notebook's recorded run as a self-contained page, no script, "
        "a cell that threw with node's report."
    ),
    epilog=(
        "Examples:\n\n"
        "  tonic export analysis.js -o pkg                 the package folder\n\n"
        "  tonic export analysis.js -o pkg --tarball       ... and `npm pack` it\n\n"
        "  tonic export a.js b.js -o pkg --name @me/notes --version 1.2.0\n\n"
        "  tonic export analysis.js -o pkg --with-tests    ... with an `npm test`\n\n"
        "  tonic export analysis.js -o pkg --force         replace pkg/\n\n"
        "  tonic export --html analysis.js -o page.html    one static page"
    ),
)
@handled
def export(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Notebooks (.js/.cjs/.mjs, .ts/.cts/.mts). The first is the package's main entry; "
            "each is also exported on its own path."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The package folder to write. Refused when it exists and is not empty "
            "(see --force). With --html: the page's file, replaced only when tonic wrote it.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="npm package name (lowercase, URL-safe, optional @scope/). Default: the "
            "first notebook's file name, else the project's package.json name.",
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Package version (semver). Default: the project's version, else 0.1.0.",
        ),
    ] = None,
    tarball: Annotated[
        bool,
        typer.Option("--tarball", help="Run `npm pack` in the package; print the tarball."),
    ] = False,
    with_tests: Annotated[
        bool,
        typer.Option(
            "--with-tests",
            help="Add test/tonic-outputs.test.cjs: `node --test` runs each notebook and "
            "compares its stdout and exit code with the recorded ones.",
        ),
    ] = False,
    no_outputs: Annotated[
        bool,
        typer.Option(
            "--no-outputs",
            help="Leave the recorded outputs (printed text, values, errors) out: the README "
            "shows prose and code only, and --with-tests checks exit codes, not stdout.",
        ),
    ] = False,
    html: HtmlOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty output folder (or file).")
    ] = False,
) -> int:
    from tonic.commands import export as command

    if html:
        return command.export_html(files, out=out, force=force, outputs=not no_outputs)
    flags = dict(tarball=tarball, with_tests=with_tests, force=force, outputs=not no_outputs)
    return command.export(files, out=out, name=name, version=version, **flags)


@app.command(
    help=(
        "Run each notebook and fail, naming the file, the cell and the error, when a cell "
        "throws or the exit code is not 0 (the `tonic-check` pre-commit hook).\n\n"
        "Notebooks run from their own folder and resume from their snapshots, so checking "
        "an unchanged notebook again replays it. Skipped (they pass): files that are not "
        ".js/.cjs/.mjs/.ts/.cts/.mts, files with no code cells, and files whose first line "
        "(after a #! line) is the comment `// tonic: skip`.\n\n"
        "The recorded-outputs file NOTEBOOK.outputs.json, committed beside the notebook, "
        "holds each code cell's stdout, stderr, value and error, the exit code and the "
        "output after the last cell, as deterministic JSON (no timings; the notebook's "
        "folder written `.`)."
    ),
    epilog=(
        "Examples:\n\n"
        "  tonic check analysis.js report.mjs         run each; fail on an error\n\n"
        "  tonic check --staged                       git's staged notebooks\n\n"
        "  tonic check --update-outputs analysis.js   write analysis.js.outputs.json\n\n"
        "  tonic check --outputs analysis.js          ... fail once it is stale"
    ),
)
@handled
def check(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Files to check (non-notebooks pass).")
    ] = None,
    staged: Annotated[
        bool,
        typer.Option("--staged", help="Also check git's staged notebooks (.js ... .mts)."),
    ] = False,
    outputs: Annotated[
        bool,
        typer.Option(
            "--outputs",
            help="Also fail when the recorded-outputs file beside a notebook "
            "(NOTEBOOK.outputs.json) differs from what the notebook prints now.",
        ),
    ] = False,
    update_outputs: Annotated[
        bool,
        typer.Option(
            "--update-outputs",
            help="Write (or refresh) NOTEBOOK.outputs.json beside each passing notebook.",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Fail a cell that runs longer than this (s).", min=0.001),
    ] = None,
) -> int:
    from tonic.commands import check as command

    return command.check(
        files or [],
        staged=staged,
        outputs=outputs,
        update_outputs=update_outputs,
        timeout=timeout,
    )


cli_groups.attach(app)


def _terminated(signum: int, _frame: object) -> None:
    """SIGTERM ends tonic like an exception: the kernel (or its container) is removed
    on the way out, not left running."""
    raise SystemExit(128 + signum)


@functools.cache
def command() -> click.Command:
    """The click command behind `app`, built once (a warm server builds it ahead)."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None, prog_name: str | None = None) -> None:
    signal.signal(signal.SIGTERM, _terminated)
    command().main(args=argv, prog_name=prog_name)
