"""`tonic watch` on a real terminal: a save runs the notebook again from its snapshot, a
save of a file it read runs the cells that read it, what the notebook writes itself
sets nothing off, nor does a save of the same bytes, a file that does not compile is
survived, and Ctrl-C ends it (with the run in progress) leaving no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import terminal
from tests.helpers import no_kernel_left, require_engine
from tonic.commands.watch import watched
from tonic.notebook.cells import parse
from tonic.results import CellResult, RunResult, Tail

NOTEBOOK = """const fs = require('fs');
const data = fs.readFileSync('data.txt', 'utf8').trim();
{ const t = Date.now(); while (Date.now() - t < 300); }
console.log('loaded', data);

// %% out
fs.writeFileSync('out.txt', data.toUpperCase());
console.log('wrote', fs.readFileSync('out.txt', 'utf8'));

// %% last
console.log('last', 1);
"""
WATCHING = b"for changes"


class Watch:
    """`tonic watch` of a notebook in `folder`, on a terminal of its own."""

    def __init__(self, folder: Path, engine: str, text: str = NOTEBOOK) -> None:
        self.path = folder / "nb.js"
        self.path.write_text(text)
        (folder / "data.txt").write_text("one\n")
        self.pid, self.master = terminal.spawn(
            ["watch", "--engine", engine, str(self.path)], folder
        )

    def shown(self, until: bytes = WATCHING, timeout: float = 60.0) -> list[bytes]:
        """The lines shown until one holding `until` (a run has ended: the watch waits)."""
        got = [terminal.visible(line) for _, line in terminal.lines(self.master, until, timeout)]
        assert any(until in line for line in got), got
        return got

    def save(self, text: str, name: str = "nb.js") -> None:
        tmp = self.path.parent / f".{name}.tmp"  # as editors save: a new file renamed over
        tmp.write_text(text)
        os.replace(tmp, self.path.parent / name)

    def interrupt(self) -> int:
        code = terminal.interrupt(self.pid, self.master)
        if code is None:
            pytest.fail("tonic watch did not end on Ctrl-C")
        return code


def test_a_save_runs_again_from_the_snapshot(tmp_path: Path) -> None:
    require_engine("criu")
    w = Watch(tmp_path, "criu")
    first = w.shown()
    assert b"loaded one" in first and b"wrote ONE" in first and b"last 1" in first, first
    w.save(NOTEBOOK.replace("'last', 1", "'last', 2"))
    again = w.shown()
    assert any(b"nb.js changed" in line for line in again), again
    assert b"last 2" in again, again
    assert any(b"restored" in line and line.startswith(b"\xe2\x9c\x93 [1") for line in again), again
    assert b"loaded one" not in again, again  # the first cell came from its snapshot
    w.save("two\n", "data.txt")
    read = w.shown()
    assert any(b"data.txt changed" in line for line in read), read
    assert b"loaded two" in read and b"wrote TWO" in read, read
    # out.txt, which the notebook writes and reads, sets off no run of its own
    quiet = [terminal.visible(line) for _, line in terminal.lines(w.master, b"\0", timeout=1.5)]
    assert not any(b"changed" in line for line in quiet), quiet
    assert w.interrupt() == 0
    assert no_kernel_left(w.path)


def test_a_file_that_does_not_compile_is_survived(tmp_path: Path) -> None:
    w = Watch(tmp_path, "replay")
    w.shown()
    broken = NOTEBOOK.replace("console.log('last', 1);", "console.log('last', );;(")
    w.save(broken)
    report = w.shown()
    assert any(b"SyntaxError" in line for line in report), report
    w.save(NOTEBOOK.replace("'last', 1", "'last', 3"))
    mended = w.shown()
    assert b"last 3" in mended, mended
    assert w.interrupt() == 0


def test_a_save_of_the_same_bytes_runs_nothing(tmp_path: Path) -> None:
    w = Watch(tmp_path, "replay")
    w.shown()
    w.save(NOTEBOOK)
    same = w.shown(b"to the same bytes")
    assert not any(b"cells ran" in line for line in same), same
    w.save(NOTEBOOK.replace("'last', 1", "'last', 4"))
    assert b"last 4" in w.shown()
    assert w.interrupt() == 0


@pytest.mark.parametrize("engine", ["replay", "criu"])
def test_ctrl_c_in_a_run_ends_it_and_the_watch(engine: str, tmp_path: Path) -> None:
    require_engine(engine)
    w = Watch(tmp_path, engine, "console.log('spinning');\nwhile (true);\n")
    w.shown(b"spinning")
    assert w.interrupt() == 0
    assert no_kernel_left(w.path)


def _result(path: Path, uses: list[dict[str, str | None]], wrote: list[list[str]]) -> RunResult:
    nb = parse(b"1;\n\n2;\n", filename=str(path))
    cells = [
        CellResult(cell, uses=used, wrote=written, modules=["/project/lib.js"] if i else [])
        for i, (cell, used, written) in enumerate(zip(nb.cells, uses, wrote, strict=True))
    ]
    return RunResult(nb, "criu", cells, Tail())


def test_what_a_watch_follows() -> None:
    path = Path("/project/nb.js")
    result = _result(
        path,
        [{"file:/project/data.csv": "h1", "file:/proc/self/stat": None}, {"env:HOME": "x"}],
        [[], ["/project/out.txt"]],
    )
    result.cells[1].uses["file:/project/out.txt"] = "h2"  # read back what it wrote
    assert watched(path, result) == {"/project/nb.js", "/project/data.csv", "/project/lib.js"}
    assert watched(path, None) == {"/project/nb.js"}
