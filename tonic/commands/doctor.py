"""`tonic doctor`: which engines work here, and why the others do not."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tonic.engines import ENGINES, PREFERENCE, EngineOptions, get_engine
from tonic.errors import TonicError


def doctor() -> int:
    console = Console(highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    table.add_column("engine", style="bold")
    table.add_column("works here")
    table.add_column("why")
    for name in [*PREFERENCE, *(n for n in ENGINES if n not in PREFERENCE)]:
        available = ENGINES[name](EngineOptions()).availability()
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
    console.print(_start_up())
    return 0


def _start_up() -> str:
    from tonic import launch, server

    if server.WORKER_OF is not None:
        return f"start-up: this command ran on the warm tonic server (pid {server.WORKER_OF})"
    mode = launch.mode()
    if mode == "off":
        return "start-up: every command imports tonic itself (TONIC_SERVER=off)"
    if launch.runtime_dir() is None:
        return "start-up: no warm server (no private folder for its socket: see TONIC_RUNTIME_DIR)"
    if mode == "auto" and not launch.in_ci():
        how = "starts one for the next command"
    else:
        how = "uses one when it runs" + (
            " (not started under CI: $CI is set)" if mode == "auto" else ""
        )
    return f"start-up: this command imported tonic itself; TONIC_SERVER={mode} {how}"
