"""`tonic watch FILE`: run the notebook, then again at every save of it or of a file its
cells read or required, each time from the longest prefix still valid (the notebook
view, with each run of restored cells folded into one line)."""

from __future__ import annotations

import os
from pathlib import Path

from blake3 import blake3
from rich.console import Console
from rich.text import Text

from tonic.commands.run import execute, timeout_message
from tonic.engines import standby
from tonic.errors import TonicError
from tonic.results import RunResult, beside
from tonic.watching import Watcher

# Where a notebook's reads are the machine's, not its inputs.
NOT_INPUTS = ("/proc/", "/sys/", "/dev/")


def main(path: Path, *, engine: str | None, timeout: float | None, args: list[str]) -> int:
    """Run and watch until Ctrl-C (exit status 0; the kernel of a run is ended first)."""
    console = Console(highlight=False, soft_wrap=True)
    path = path.absolute()
    watcher = Watcher()
    why = "first run"
    files = {str(path)}
    watcher.follow(files)  # a save during the first run counts
    standby.enable()
    try:
        while True:
            console.rule(Text(f"{path.name} · {why}", style="bold"), style="dim")
            before = contents(files)  # what this run reads, as far as is known yet
            result = _once(console, path, engine=engine, timeout=timeout, args=args)
            files = watched(path, result)
            watcher.follow(files)
            console.print(
                Text(
                    f"watching {_count(len(files), 'file')} for changes · Ctrl-C to stop",
                    style="dim",
                )
            )
            while True:
                changed = watcher.changed()
                if any(before.get(f) != content(f) for f in changed):
                    break
                # (a save that changed nothing: an editor's, or a touch)
                console.print(Text(f"{why_changed(changed, path)}, to the same bytes", style="dim"))
            why = why_changed(changed, path)
    except KeyboardInterrupt:
        console.print(Text("stopped watching", style="dim"))
        return 0
    finally:
        watcher.close()
        standby.discard_all()


def _once(
    console: Console, path: Path, *, engine: str | None, timeout: float | None, args: list[str]
) -> RunResult | None:
    """One run in the view; a run that cannot start says why in one line (the watch goes
    on: the next save may mend it)."""
    try:
        result = execute(
            path,
            plain=False,
            as_json=False,
            engine=engine,
            timeout=timeout,
            args=args,
            fold_restored=True,
        )
    except TonicError as err:
        console.print(Text(f"tonic: error: {err}", style="bold red"))
        return None
    if result.timed_out:
        console.print(Text(timeout_message(result, timeout), style="yellow"))
    return result


def watched(path: Path, result: RunResult | None) -> set[str]:
    """The notebook and the files its cells loaded or read, but those it wrote itself
    (a run must not set off the next one)."""
    files = {str(path)}
    if result is None:
        return files
    wrote: set[str] = set()
    for cell in result.cells:
        files.update(cell.modules)
        files.update(use[5:] for use in cell.uses if use.startswith("file:"))
        wrote.update(cell.wrote)
    inputs = {f for f in files - wrote if os.path.isabs(f) and not f.startswith(NOT_INPUTS)}
    return inputs | {str(path)}


def content(path: str) -> str | None:
    """A digest of the file's bytes (None: it cannot be read)."""
    try:
        return blake3(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def contents(files: set[str]) -> dict[str, str | None]:
    return {f: content(f) for f in files}


def why_changed(changed: set[str], path: Path) -> str:
    names = sorted(beside(f, path.parent) for f in changed)
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{shown} changed"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
