"""`tonic why FILE`: which snapshot the next run resumes from, and what broke the rest."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from tonic import settings
from tonic.engines import engine_for
from tonic.errors import TonicError
from tonic.kernel.program import program_for
from tonic.kernel.stdio import Stdio
from tonic.store import DamagedRecord
from tonic.timetravel.choose import NO_SNAPSHOT, Chooser
from tonic.timetravel.keys import explain
from tonic.timetravel.records import SnapshotRecord


def why(path: Path, *, engine: str | None, plain: bool) -> int:
    # The next run's stdout and stderr are taken to be like this command's.
    program = program_for(path, plain=plain, args=[], stdio=Stdio.like(files=plain))
    chosen, _ = engine_for(settings.load(program.path, options={"engine": engine}))
    chooser = chosen.chooser(program)
    if chooser is None:
        raise TonicError(
            f"the {chosen.name} engine keeps no snapshots; `tonic why` explains those of "
            "the criu and docker engines (--engine)"
        )
    console = Console(highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    table.add_column("cells", style="bold")
    table.add_column("verdict")
    verdicts = chooser.verdicts()
    for verdict in verdicts:
        style = "green" if verdict.reusable else "red"
        table.add_row(f"1-{verdict.cell}", f"[{style}]{verdict.reason}[/{style}]")
    console.print(table)
    reusable = [v for v in verdicts if v.reusable]
    stored = chooser.stored_run()
    for note in chooser.ignored:
        console.print(f"note: {note}", style="yellow")
    if stored is not None:
        console.print("unchanged since its last run: the next run shows the stored outputs")
        return 0
    if reusable:
        console.print(f"the next run restores cells 1-{reusable[0].cell} and runs the rest")
        return 0
    console.print("the next run starts afresh" + _hint(chooser, [v.reason for v in verdicts]))
    return 0


def _hint(chooser: Chooser, reasons: list[str]) -> str:
    """When no prefix matched: why the shortest could not be used, else what differs
    from this notebook's latest snapshot."""
    found = [r for r in reasons if r != NO_SNAPSHOT]
    if found:
        return f": {found[-1]}"
    mine = [
        record
        for s in chooser.store.snapshots()
        if s.meta.get("path") == str(chooser.program.path)
        and (record := _record(s.meta, chooser)) is not None
    ]
    if not mine:
        return " (no snapshot of this notebook yet)"
    latest = mine[0]
    changed = explain(latest.environment, chooser.keys.environment.parts())
    if changed:
        return f" (its latest snapshot was made with a different {', '.join(changed)})"
    return " (cell 1 changed since its latest snapshot)"


def _record(meta: dict[str, object], chooser: Chooser) -> SnapshotRecord | None:
    try:
        return SnapshotRecord.from_meta(meta, chooser.places)
    except DamagedRecord:
        return None
