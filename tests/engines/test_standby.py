"""The standby (engines/standby.py): runs made one after the other in one process, as
`tonic watch` and `tonic serve` make them, each equal to a fresh `node FILE` (output,
exit code, the files left behind), whether the run took the kernel restored ahead or not;
and what is held ends with the command."""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    FIXTURES,
    Outcome,
    kernels_running,
    no_kernel_left,
    node,
    require_engine,
    set_files,
)
from tests.timetravel.edits import random_edit
from tonic import settings
from tonic.engines import engine_for, standby
from tonic.kernel.program import program_for
from tonic.results import NullSink, RunResult

TIMETRAVEL = FIXTURES / "timetravel"
EDITS = 16


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    require_engine("criu")
    for f in TIMETRAVEL.iterdir():
        shutil.copy(f, tmp_path / f.name)
    standby.enable()
    try:
        yield tmp_path
    finally:
        standby.discard_all()
        standby._Held.enabled = False


def run_here(path: Path) -> tuple[Outcome, RunResult]:
    """A run in this process (the view's: values captured, stdout and stderr pipes)."""
    program = program_for(path, plain=False, args=[], cwd=path.parent)
    engine, _ = engine_for(settings.load(path, options={"engine": "criu"}))
    result = engine.run(program, NullSink())
    out = b"".join(bytes(c.stdout) for c in result.cells) + bytes(result.tail.stdout)
    err = b"".join(bytes(c.stderr) for c in result.cells) + bytes(result.tail.stderr)
    if result.tail.error and not result.tail.stderr:
        err += result.tail.error.encode()
    return Outcome(out, err, result.exit_code), result


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def same_as_node(project: Path, name: str) -> RunResult:
    """tonic runs here; node at the same path in the pristine project (with the edited
    notebook), then the project gets tonic's files back."""
    got, result = run_here(project / name)
    after_tonic = files(project)
    pristine = {p.name: p.read_bytes() for p in TIMETRAVEL.iterdir()}
    pristine[name] = after_tonic[name]
    set_files(project, pristine)
    expected = node(project / name)
    after_node = files(project)
    set_files(project, after_tonic)
    assert (got.stdout, got.stderr, got.code) == (
        expected.stdout,
        expected.stderr,
        expected.code,
    ), (
        f"tonic:\n{got.describe()}\n=== node ===\n{expected.describe()}\n"
        f"=== notebook ===\n{(project / name).read_text()}"
    )
    assert after_tonic == after_node, "the files differ from a fresh node run's"
    return result


@pytest.mark.parametrize("name", ["analysis.js", "files.js", "errors.js"])
def test_runs_with_a_standby_equal_node(project: Path, name: str) -> None:
    """Edits of the last cell (where the standby waits) and random edits anywhere."""
    rng = random.Random(f"standby-{name}")
    path = project / name
    text = path.read_text()
    same_as_node(project, name)
    used, kinds = 0, Counter[str]()
    for step in range(EDITS):
        if step % 2 == 0:
            head, _, last = text.rpartition("// %%")
            kind, text = "last", head + "// %%" + last.replace("\n", f"\n// edit {step}\n", 1)
        else:
            kind, text = random_edit(rng, text)
        path.write_text(text)
        result = same_as_node(project, name)
        used += bool(result.stats.get("standby"))
        kinds[kind] += 1
    print(f"\n{name}: {EDITS} edits {dict(kinds)}, {used} took the standby, each equal to node")
    assert used >= EDITS // 4, f"only {used} of {EDITS} runs took the standby"


def test_the_standby_ends_with_the_command(project: Path) -> None:
    path = project / "analysis.js"
    run_here(path)
    assert kernels_running(path), "no standby waits after the run"
    standby.discard_all()
    assert no_kernel_left(path)


WORKER_NOTEBOOK = """\
// %% cell 1: a worker that reads a file as it starts
const { Worker } = require('worker_threads');
const w = new Worker(__dirname + '/w.js');
// %% cell 2
w.once('message', (m) => console.log('the worker read', m));
"""
WORKER = """\
const fs = require('fs');
let spun = 0;
for (let i = 0; i < 4e8; i++) spun += i & 1;  // (still under way when cell 1's pause is dumped)
require('worker_threads').parentPort.postMessage(fs.readFileSync(__dirname + '/data.txt', 'utf8'));
"""


def test_a_standby_waits_stopped(tmp_path: Path) -> None:
    """The worker, dumped while it spins, reads data.txt once it goes on. data.txt
    changes while the standby waits: its worker must read it at the run's time, as after
    a restore done then (not before, with the old content, unobserved)."""
    require_engine("criu")
    nb = tmp_path / "nb.js"
    set_files(tmp_path, {"nb.js": WORKER_NOTEBOOK.encode(), "w.js": WORKER.encode()})
    (tmp_path / "data.txt").write_text("one")
    standby.enable()
    try:
        taken = 0
        for edit in range(3):
            nb.write_text(WORKER_NOTEBOOK + f"// edit {edit} of the last cell\n")
            got, result = run_here(nb)
            assert got == node(nb), f"edit {edit}"
            taken += bool(result.stats.get("standby"))
            assert kernels_running(nb), "no standby waits after the run"
            time.sleep(1.5)  # (a user's while before the next save)
            (tmp_path / "data.txt").write_text(f"changed {edit}")
        got, _ = run_here(nb)
        assert got == node(nb), "the standby's worker read data.txt before the run"
        assert taken == 2, f"{taken} of the edited runs took the standby"
    finally:
        standby.discard_all()
        standby._Held.enabled = False


def test_a_kernel_that_would_see_the_sigcont_is_not_held(tmp_path: Path) -> None:
    """The held standby goes on at a SIGCONT: a notebook listening for one would see it
    (node's own `node FILE` gets none), so such a kernel waits in no standby."""
    require_engine("criu")
    nb = tmp_path / "nb.js"
    text = (
        "// %% a\nprocess.on('SIGCONT', () => console.log('SIGCONT!'));\n// %% b\nconsole.log(1);\n"
    )
    nb.write_text(text)
    standby.enable()
    try:
        assert run_here(nb)[0] == node(nb)
        assert not kernels_running(nb), "a standby that would see its SIGCONT waits"
        nb.write_text(text.replace("log(1)", "log(2)"))
        got, result = run_here(nb)
        assert got == node(nb) and not result.stats.get("standby")
    finally:
        standby.discard_all()
        standby._Held.enabled = False
