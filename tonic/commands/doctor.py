"""`tonic doctor`: which engines work here, and why the others do not; the settings in
effect, and where each came from."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from tonic import settings
from tonic.engines import ENGINES, PREFERENCE, get_engine
from tonic.errors import TonicError


def doctor() -> int:
    console = Console(highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    table.add_column("engine", style="bold")
    table.add_column("works here")
    table.add_column("why")
    for name in [*PREFERENCE, *(n for n in ENGINES if n not in PREFERENCE)]:
        available = ENGINES[name](settings.current()).availability()
        table.add_row(name, "yes" if available.ok else "no", available.reason)
    console.print(table)
    try:
        engine, _ = get_engine(None)
    except TonicError as err:
        console.print(f"no engine can run notebooks here: {err}")
        return 1
    console.print(
        f"default engine: {engine.name} (another with `--engine NAME` or TONIC_ENGINE=NAME)"
    )
    _settings(console)
    console.print(_start_up())
    return 0


def settings_in_effect() -> tuple[settings.Settings, str | None]:
    """The settings here (the project: the package.json that governs this folder), and
    why the project's were left out (a bad "tonic" object)."""
    try:
        return settings.load(Path.cwd()), None
    except TonicError as err:
        return settings.load(), str(err)


def _settings(console: Console) -> None:
    found, problem = settings_in_effect()
    table = Table(box=None, pad_edge=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    table.add_column("from")
    errors = [problem] if problem else []
    for row in found.rows():
        table.add_row(
            row.variable, row.value, f"{row.source} (invalid)" if row.error else row.source
        )
        if row.error:
            errors.append(row.error)
    console.print(table)
    for error in errors:
        console.print(f"bad setting: {error}")


def _start_up() -> str:
    from tonic import launch, server

    if server.WORKER_OF is not None:
        return f"start-up: this command ran on the warm tonic server (pid {server.WORKER_OF})"
    current = settings.current()
    mode = current.server
    if mode == "off":
        return "start-up: every command imports tonic itself (TONIC_SERVER=off)"
    if launch.runtime_dir(current.runtime_dir) is None:
        return "start-up: no warm server (no private folder for its socket: see TONIC_RUNTIME_DIR)"
    if mode == "auto" and not launch.in_ci():
        how = "starts one for the next command"
    else:
        how = "uses one when it runs" + (
            " (not started under CI: $CI is set)" if mode == "auto" else ""
        )
    return f"start-up: this command imported tonic itself; TONIC_SERVER={mode} {how}"
