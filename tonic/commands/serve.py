"""`tonic serve FILE...` (and `tonic open`): a live page per notebook on 127.0.0.1.

Each notebook runs at start, then again at every save of it or of a file its cells read
(the same rules as `tonic watch`), and its page shows each run as it happens. An edit
made in a page is written into the file, and runs as that save. The runs take turns in
this thread; the web server has one of its own. Ctrl-C ends it all, the run in progress
and its kernel first.
"""

from __future__ import annotations

import os
import secrets
import sys
import webbrowser
from pathlib import Path

from rich.console import Console
from rich.text import Text

from tonic.commands.watch import content, contents, watched, why_changed
from tonic.engines import standby
from tonic.errors import TonicError
from tonic.live.app import make_app
from tonic.live.runs import run_once
from tonic.live.state import LiveNotebook
from tonic.live.web import HOST, WebServer
from tonic.notebook.source import read_source
from tonic.watching import Watcher


def main(
    files: list[Path],
    *,
    port: int,
    engine: str | None,
    timeout: float | None,
    args: list[str],
    browse: bool = False,
) -> int:
    console = Console(highlight=False, soft_wrap=True)
    notebooks = [LiveNotebook(path, n) for n, path in enumerate(_checked(files))]
    token = secrets.token_urlsafe(24)
    web = WebServer(make_app(notebooks, token), port)
    web.start()
    url = f"http://{HOST}:{web.port}/?token={token}"
    watcher = Watcher()
    standby.enable()
    try:
        console.print(Text(f"serving {_names(notebooks)} at {url}", style="bold"))
        for nb in notebooks[1:] if len(notebooks) > 1 else []:
            console.print(Text(f"  {nb.name}: http://{HOST}:{web.port}/n/{nb.number}"))
        console.print(Text("Ctrl-C to stop", style="dim"))
        if browse and not _opened(url):
            console.print(Text("no browser could be opened here: open the URL above", style="dim"))
        _loop(console, notebooks, watcher, engine=engine, timeout=timeout, args=args)
    except KeyboardInterrupt:
        console.print(Text("stopped serving", style="dim"))
        return 0
    finally:
        watcher.close()
        standby.discard_all()
        web.stop()
    return 0


def _loop(
    console: Console,
    notebooks: list[LiveNotebook],
    watcher: Watcher,
    *,
    engine: str | None,
    timeout: float | None,
    args: list[str],
) -> None:
    """Run what is due, then wait for the next change of what the runs read; forever."""
    due = {nb.number: "first run" for nb in notebooks}
    inputs = {nb.number: {str(nb.path)} for nb in notebooks}
    before: dict[int, dict[str, str | None]] = {}
    watcher.follow(set().union(*inputs.values()))  # a save during the first runs counts
    while True:
        for number, why in due.items():
            nb = notebooks[number]
            before[number] = contents(inputs[number])
            result = run_once(nb, why, engine=engine, timeout=timeout, args=args)
            inputs[number] = watched(nb.path, result)
            console.print(Text(f"{nb.name} · {nb.body()['status']}", style="dim"))
        watcher.follow(set().union(*inputs.values()))
        due = {}
        while not due:
            changed = watcher.changed()
            for nb in notebooks:
                hit = changed & inputs[nb.number]
                if any(before[nb.number].get(f) != content(f) for f in hit):
                    due[nb.number] = why_changed(hit, nb.path)


def _opened(url: str) -> bool:
    """The page in the user's browser; none without a display (where Python would start a
    text browser in this very terminal)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    return webbrowser.open(url)


def _checked(files: list[Path]) -> list[Path]:
    """The notebooks, each once; one that cannot be read is refused as `tonic run` refuses
    it (an empty one is served: its cells may come later)."""
    if not files:
        raise TonicError("give at least one notebook to serve")
    paths: list[Path] = []
    for file in files:
        read_source(file, allow_empty=True)
        if file.absolute() not in paths:
            paths.append(file.absolute())
    return paths


def _names(notebooks: list[LiveNotebook]) -> str:
    return notebooks[0].name if len(notebooks) == 1 else f"{len(notebooks)} notebooks"
