"""Keys and file travel from what the cells were observed to use (issue 12's failures):
each resumed run equals `node FILE`, and only what changed reruns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Outcome, node, require_engine, tonic

READS = """\
// %% read the data
const fs = require('fs');
const path = require('path');
const data = JSON.parse(fs.readFileSync(path.join(__dirname, 'data.json'), 'utf8'));
console.log('data', data.v, process.env.TONIC_TEST_VAR);

// %% last
console.log('last', 1);
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    require_engine("criu")
    (tmp_path / "data.json").write_text('{"v": 1}')
    return tmp_path


def _run(path: Path, *extra: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    got = tonic(
        "run", "--json", "--engine", "criu", *extra, str(path), cwd=cwd or path.parent, env=env
    )
    data: dict[str, object] = json.loads(got.stdout)
    return data


def _plain(path: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """`tonic run --plain` equals `node FILE` (output, exit code)."""
    expected = node(path, cwd=cwd or path.parent, env=env)
    got = tonic("run", "--plain", "--engine", "criu", str(path), cwd=cwd or path.parent, env=env)
    assert (got.stdout, got.stderr, got.code) == (
        expected.stdout,
        expected.stderr,
        expected.code,
    ), got.describe()


def _edit_last(path: Path, value: int) -> None:
    text = path.read_text()
    start = text.rindex("console.log('last', ")
    path.write_text(text[:start] + f"console.log('last', {value});\n")


def test_a_data_file_a_cell_read_reruns_that_cell(project: Path) -> None:
    path = project / "nb.js"
    path.write_text(READS)
    _plain(path)
    (project / "data.json").write_text('{"v": 2}')
    _edit_last(path, 2)
    _plain(path)  # data 2, as node prints it: not the snapshot's data 1
    why = tonic("why", str(path), cwd=project).stdout.decode()
    _edit_last(path, 3)
    assert _run(path)["restored"] == 1, why


AFTER_THE_LAST_CELL = """\
// %% the last cell: its timer reads data.json once the cell is over
setTimeout(() => console.log(require('fs').readFileSync(__dirname + '/data.json', 'utf8')), 20);
"""


def test_what_the_event_loop_reads_after_the_last_cell_keys_the_stored_run(
    project: Path,
) -> None:
    """An unchanged notebook replays its stored run only while what it read holds, the
    event loop's reads after its last cell too (they were dropped: a stale replay)."""
    nb = project / "nb.js"
    nb.write_text(AFTER_THE_LAST_CELL)
    _plain(nb)
    (project / "data.json").write_text('{"v": 2}')
    _plain(nb)
    _plain(nb)  # (unchanged again: the stored run of the run before)


def test_variables_read_and_not_read(project: Path) -> None:
    path = project / "nb.js"
    path.write_text(READS)
    env = dict(os.environ, TONIC_TEST_VAR="a")
    _run(path, env=env)
    # a variable no cell read, as `make`, npm or a new shell change them
    _edit_last(path, 2)
    other = dict(env, SHLVL="7", OLDPWD="/", MAKEFLAGS="-j2", npm_lifecycle_event="x")
    assert _run(path, env=other)["restored"] == 1
    # the variable cell 1 read
    _edit_last(path, 3)
    why = tonic("why", str(path), cwd=project, env=dict(env, TONIC_TEST_VAR="b"))
    assert b"cell 1 read $TONIC_TEST_VAR, which changed" in why.stdout
    _plain(path, env=dict(env, TONIC_TEST_VAR="b"))


def test_bash_c_another_working_directory_and_plain_after_the_view(project: Path) -> None:
    path = project / "nb.js"
    path.write_text(READS)
    _run(path)  # the view's run (values inspected)
    _edit_last(path, 2)
    command = f"{sys.executable} -m tonic run --json --engine criu {path}"
    out = subprocess.run(["bash", "-c", command], capture_output=True, cwd=project, check=True)
    assert json.loads(out.stdout)["restored"] == 1
    _edit_last(path, 3)
    assert _run(path, cwd=project.parent)["restored"] == 1  # __dirname, not the cwd
    _edit_last(path, 4)
    why = tonic("why", "--plain", str(path), cwd=project).stdout
    assert b"restores cells 1-1" in why, why  # the view's snapshot, for --plain
    _plain(path)
    _edit_last(path, 5)
    assert _run(path)["restored"] == 1  # and --plain's, for the view


def test_a_relative_path_keys_the_working_directory(project: Path) -> None:
    path = project / "nb.js"
    path.write_text(READS.replace("path.join(__dirname, 'data.json')", "'data.json'"))
    _run(path)
    _edit_last(path, 2)
    why = tonic("why", str(path), cwd=project.parent).stdout.decode()
    assert "used the working directory" in why
    _plain(path, cwd=project.parent)  # node's ENOENT, not the snapshot's data


def test_a_worker_runs_the_edited_file(project: Path) -> None:
    """A worker started in cell 1 from the notebook's own file has compiled all of it
    before cell 1 ends; after an edit of the last cell, node's worker runs the edited
    file (`last 2 worker`), so the snapshot after cell 1 must not be continued."""
    path = project / "nb.js"
    path.write_text(
        "// %% start a worker, and wait until it runs\n"
        "const { Worker, isMainThread, workerData } = require('worker_threads');\n"
        "const flag = new Int32Array(isMainThread ? new SharedArrayBuffer(4) : workerData);\n"
        "if (isMainThread) {\n"
        "  new Worker(__filename, { workerData: flag.buffer });\n"
        "  Atomics.wait(flag, 0, 0, 10000);\n"
        "} else {\n"
        "  Atomics.store(flag, 0, 1);\n"
        "  Atomics.notify(flag, 0);\n"
        "}\n\n"
        "// %% last\n"
        "console.log('last', 1, isMainThread ? 'main' : 'worker');\n"
    )
    _plain(path)
    path.write_text(path.read_text().replace("'last', 1", "'last', 2"))
    why = tonic("why", "--plain", str(path), cwd=project).stdout.decode()
    assert "cell 1 read the notebook's own file (a worker or a child runs it)" in why, why
    _plain(path)


def test_another_programs_file_is_never_touched(project: Path) -> None:
    """A file another process writes into the folder during a run is not the notebook's:
    a resume from an earlier snapshot neither deletes it nor refuses when it changes."""
    path = project / "nb.js"
    foreign = project / "foreign.txt"
    path.write_text(
        "// %% write a log\n"
        "const fs = require('fs');\n"
        "fs.writeFileSync(__dirname + '/log.txt', 'run ' + Math.random());\n\n"
        "// %% wait for the other program\n"
        "const end = Date.now() + 300; while (Date.now() < end) {}\n\n"
        "// %% last\n"
        "console.log('last', 1);\n"
    )
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; time.sleep(0.15); open({str(foreign)!r}, 'w').write('x')",
        ]
    )
    try:
        assert _run(path)["exit_code"] == 0
    finally:
        writer.wait()
    assert foreign.read_text() == "x"
    path.write_text(path.read_text().replace("300", "301"))  # cell 2 edited: resume at 1
    assert _run(path)["restored"] == 1
    assert foreign.read_text() == "x"
    foreign.write_text("y")
    assert node(path).code == 0  # node rewrites log.txt in between
    log = (project / "log.txt").read_text()
    _edit_last(path, 2)
    got = tonic("run", "--plain", "--engine", "criu", str(path), cwd=project)
    assert got.code == 0, got.describe()
    assert foreign.read_text() == "y"
    assert (project / "log.txt").read_text() != log  # cell 1 ran again, as node would


def test_cost_does_not_grow_with_the_folder(project: Path) -> None:
    """Past 20,000 files beside the notebook, its files still travel."""
    crowd = project / "crowd"
    crowd.mkdir()
    for i in range(21_000):
        (crowd / f"f{i}").write_bytes(b"")
    path = project / "nb.js"
    path.write_text(
        "// %% write\nrequire('fs').appendFileSync(__dirname + '/out.txt', 'a');\n\n"
        "// %% last\nconsole.log('last', 1);\n"
    )
    first = _run(path)
    assert not [n for n in first["notes"] if "no snapshots" in str(n)], first["notes"]  # type: ignore[union-attr]
    _edit_last(path, 2)
    assert _run(path)["restored"] == 1
    assert (project / "out.txt").read_text() == "a"


def test_a_file_on_stdin_is_keyed_by_its_content(project: Path) -> None:
    """`tonic run nb.js < input` resumes (the restored process reads on at its offset),
    and runs again when the input changes; a pipe says in one line why it cannot."""
    path = project / "nb.js"
    path.write_text(
        "// %% read stdin\nconst input = require('fs').readFileSync(0, 'utf8');\n"
        "console.log('lines', input.split('\\n').length);\n\n"
        "// %% last\nconsole.log('last', 1);\n"
    )
    given = project / "input.txt"
    given.write_text("a\nb\n")

    def both() -> tuple[Outcome, Outcome]:
        with open(given, "rb") as f:
            expected = node(path, stdin=f.read())
        with open(given, "rb") as f:
            got = subprocess.run(
                [sys.executable, "-m", "tonic", "run", "--json", "--engine", "criu", str(path)],
                stdin=f,
                capture_output=True,
                cwd=project,
                check=False,
            )
        return expected, Outcome(got.stdout, got.stderr, got.returncode)

    both()
    _edit_last(path, 2)
    expected, got = both()
    data = json.loads(got.stdout)
    assert data["restored"] == 1
    assert "".join(c["stdout"] for c in data["cells"]).encode() == expected.stdout
    given.write_text("a\nb\nc\n")
    expected, got = both()
    data = json.loads(got.stdout)
    assert data["restored"] == 0
    assert "".join(c["stdout"] for c in data["cells"]).encode() == expected.stdout
    piped = tonic("run", "--json", str(path), cwd=project, stdin=b"x\n")
    assert any("stdin is a pipe" in n for n in json.loads(piped.stdout)["notes"])
