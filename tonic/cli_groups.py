"""The command line's groups of subcommands (`tonic cache`, `tonic hook`, `tonic server`):
declared here, each handed to its module in tonic.commands, as in cli.py."""

from __future__ import annotations

from typing import Annotated

import typer

from tonic.error_handler import handled

cache_app = typer.Typer(
    help="The snapshot cache: $TONIC_CACHE, else $XDG_CACHE_HOME/tonic (private, 0700).",
    no_args_is_help=True,
)


@cache_app.command("ls")
@handled
def cache_ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the snapshots (notebook, cell, when made and last used, size), and every byte
    the cache takes on disk, by kind (as du counts it, and the docker engine's images)."""
    from tonic.commands import cache as command

    command.ls(as_json=as_json)


@cache_app.command(
    "gc",
    help="Remove snapshots of notebooks that no longer exist, and unreferenced data.\n\n"
    "Unreferenced data: chunks no snapshot uses, unpacked images over $TONIC_HOT_CACHE, "
    "the docker engine's images no snapshot needs and its containers left by killed runs.",
)
@handled
def cache_gc(
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size",
            help="Then drop the least recently used snapshots (the newest of each "
            "notebook last) until the whole cache, as `cache ls` counts it, is at most "
            "this big (e.g. 500M, 2G).",
        ),
    ] = None,
) -> None:
    from tonic.commands import cache as command

    command.gc(max_size=max_size)


@cache_app.command(
    "clear",
    help="Remove every snapshot and stored run.\n\n"
    "The docker engine's images of this cache go too; its base image stays.",
)
@handled
def cache_clear() -> None:
    from tonic.commands import cache as command

    command.clear()


hook_app = typer.Typer(
    help="A plain git pre-commit hook, without the pre-commit framework (with it, use the "
    "`tonic-check` hook of .pre-commit-hooks.yaml).",
    no_args_is_help=True,
)


@hook_app.command(
    "install",
    epilog=(
        "Examples:\n\n"
        "  tonic hook install             write .git/hooks/pre-commit\n\n"
        "  tonic hook install --outputs   ... checking NOTEBOOK.outputs.json too\n\n"
        "  git commit --no-verify         commit once without the hook"
    ),
)
@handled
def hook_install(
    force: Annotated[
        bool, typer.Option("--force", help="Replace a pre-commit hook that is not tonic's.")
    ] = False,
    outputs: Annotated[
        bool, typer.Option("--outputs", help="The hook also checks recorded-outputs files.")
    ] = False,
) -> int:
    """Write the repository's git pre-commit hook, which runs `tonic check --staged`."""
    from tonic.commands import hook as command

    return command.install(force=force, outputs=outputs)


server_app = typer.Typer(
    help=(
        "The warm tonic server, which saves each command ~70 ms of start-up. With "
        "$TONIC_SERVER=auto (the default) a command starts one in the background when none "
        "runs (not under CI: $CI set), and later commands run in a process forked from it, "
        "with their own stdin, stdout, stderr, arguments, environment and working directory. "
        "It exits after "
        "$TONIC_SERVER_IDLE seconds without commands (default 600) and when tonic changes. "
        "$TONIC_SERVER=on uses a running server but never starts one; off never uses one."
    ),
    no_args_is_help=True,
)


@server_app.command("status")
@handled
def server_status() -> int:
    """Show this user's tonic servers: pid, commands served, uptime."""
    from tonic.commands import server as command

    return command.status()


@server_app.command("start")
@handled
def server_start() -> int:
    """Start a server for this tonic (if none runs) and wait until it answers."""
    from tonic.commands import server as command

    return command.start()


@server_app.command("stop")
@handled
def server_stop() -> int:
    """Stop this user's tonic servers, after the commands they are running."""
    from tonic.commands import server as command

    return command.stop()


def attach(app: typer.Typer) -> None:
    """Add the groups to `tonic`'s command line."""
    app.add_typer(cache_app, name="cache")
    app.add_typer(hook_app, name="hook")
    app.add_typer(server_app, name="server")
