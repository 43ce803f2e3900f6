"""Time travel with the criu engine: every resumed run equals a fresh `node FILE`."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import (
    FIXTURES,
    kernels_running,
    no_kernel_left,
    node,
    node_strips_types,
    require_engine,
    set_files,
    tonic,
)
from tests.timetravel.edits import THROWS, random_edit
from tonic import settings
from tonic.engines import engine_for
from tonic.kernel.program import program_for
from tonic.kernel.stdio import Stdio

TIMETRAVEL = FIXTURES / "timetravel"
EDITS_PER_NOTEBOOK = int(os.environ.get("TONIC_EDITS", "36"))
DOCKER_EDITS_PER_NOTEBOOK = int(os.environ.get("TONIC_DOCKER_EDITS", "10"))
NOTEBOOKS = ["analysis.js", "strict.js", "uses_lib.js", "errors.js", "files.js"]
if node_strips_types():  # a TypeScript notebook where node runs one (the node matrix)
    NOTEBOOKS.append("typed.ts")
EDITS_RUN: Counter[str] = Counter()  # reported at the end of the test session


def _criu_or_skip() -> None:
    require_engine("criu")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    _criu_or_skip()
    for f in TIMETRAVEL.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def _same(path: Path, *extra: str) -> None:
    expected = node(path)
    got = tonic("run", "--plain", "--engine", "criu", str(path), *extra, cwd=path.parent)
    if (got.stdout, got.stderr, got.code) != (expected.stdout, expected.stderr, expected.code):
        (path.parent.parent / "failed.js").write_text(path.read_text())
        why = tonic("why", str(path), "--plain", cwd=path.parent).stdout.decode(errors="replace")
        pytest.fail(
            f"tonic:\n{got.describe()}\n=== node ===\n{expected.describe()}\n"
            f"=== notebook ===\n{path.read_text()}\n=== tonic why ===\n{why}"
        )


def _json_run(path: Path) -> dict[str, object]:
    got = tonic("run", "--json", "--engine", "criu", str(path), cwd=path.parent)
    data: dict[str, object] = json.loads(got.stdout)
    return data


@pytest.mark.parametrize("name", NOTEBOOKS)
@pytest.mark.parametrize("engine", ["criu", "docker"])
def test_edit_sequence(project: Path, name: str, engine: str) -> None:
    """Random edits; after each, a resumed `tonic run --plain` equals `node FILE` run in a
    fresh copy of the project (output, exit code, and the files left behind; under docker
    the files stay in the container and the project's are untouched)."""
    require_engine(engine)
    rng = random.Random(f"tonic-{name}")
    path = project / name
    original = path.read_text()
    lib = project / "lib_notebook.js"
    lib_original = lib.read_text()
    counts: Counter[str] = Counter()
    _same_as_fresh(project, name, engine)
    text = original
    for step in range(EDITS_PER_NOTEBOOK if engine == "criu" else DOCKER_EDITS_PER_NOTEBOOK):
        if step % 12 == 11:
            kind, text = "reset", original
            lib.write_text(lib_original)
        elif name == "uses_lib.js" and rng.random() < 0.25:
            kind, new_lib = random_edit(rng, lib.read_text())
            kind = "lib-" + kind
            lib.write_text(new_lib)
        else:
            kind, text = random_edit(rng, text)
        counts[kind] += 1
        path.write_text(text)
        _same_as_fresh(project, name, engine)
    EDITS_RUN.update({f"{engine}:{kind}": n for kind, n in counts.items()})
    print(f"\n{name}: {sum(counts.values())} edits, each resumed run equal to node: {dict(counts)}")


ESM_NOTEBOOKS = ["esm_analysis.mjs", "esm_await.mjs"]
ESM_EDITS_PER_NOTEBOOK = int(os.environ.get("TONIC_ESM_EDITS", "50"))


@pytest.mark.parametrize("name", ESM_NOTEBOOKS)
def test_es_module_edit_sequence(project: Path, name: str) -> None:
    """Random edits of ES module notebooks (static and dynamic imports, top-level await,
    import.meta); after each, a resumed `tonic run --plain` equals `node FILE`, and
    `tonic why` told beforehand whether it would resume (the share is reported)."""
    rng = random.Random(f"tonic-esm-{name}")
    path = project / name
    original = path.read_text()
    counts: Counter[str] = Counter()
    resumed = 0
    _same_as_fresh(project, name)
    text = original
    for step in range(ESM_EDITS_PER_NOTEBOOK):
        if step % 12 == 11:
            kind, text = "reset", original
        else:
            kind, text = random_edit(rng, text, module=True)
        counts[kind] += 1
        path.write_text(text)
        resumed += _resumes(path)
        _same_as_fresh(project, name)
    EDITS_RUN.update({f"esm:{kind}": n for kind, n in counts.items()})
    EDITS_RUN["esm-resumed"] += resumed
    print(f"\n{name}: {sum(counts.values())} edits, {resumed} resumed: {dict(counts)}")


def _resumes(path: Path) -> bool:
    """Whether the next `tonic run --plain` (stdout and stderr pipes, in the notebook's
    folder) resumes: `tonic why`'s answer, asked in this process."""
    program = program_for(path, plain=True, args=[], cwd=path.parent, stdio=Stdio())
    engine, _ = engine_for(settings.load(path, options={"engine": "criu"}))
    chooser = engine.chooser(program)
    assert chooser is not None
    return chooser.stored_run() is not None or chooser.choose()[0] is not None


def _same_as_fresh(project: Path, name: str, engine: str = "criu") -> None:
    """tonic resumes in `project`; node runs at the same path in the pristine project
    (with the edited sources); then the project gets tonic's files back."""
    before = _files(project)
    got = tonic("run", "--plain", "--engine", engine, str(project / name), cwd=project)
    after_tonic = _files(project)
    if engine == "docker":
        assert after_tonic == before, "the docker engine changed the project's files"
    pristine = {p.name: p.read_bytes() for p in TIMETRAVEL.iterdir()}
    for edited in (name, "lib_notebook.js"):
        pristine[edited] = after_tonic[edited]
    set_files(project, pristine)
    expected = node(project / name)
    after_node = _files(project)
    set_files(project, after_tonic)
    if (got.stdout, got.stderr, got.code) != (expected.stdout, expected.stderr, expected.code):
        why = tonic("why", str(project / name), "--plain", cwd=project).stdout.decode("utf-8")
        pytest.fail(
            f"tonic:\n{got.describe()}\n=== node ===\n{expected.describe()}\n"
            f"=== notebook ===\n{(project / name).read_text()}\n=== tonic why ===\n{why}"
        )
    if engine != "docker":
        assert after_tonic == after_node, "the files differ from a fresh node run's"


def test_resume_restores_and_unchanged_runs_nothing(project: Path) -> None:
    path = project / "random.js"
    first = _json_run(path)
    assert first["restored"] == 0
    again = _json_run(path)
    assert again["restored"] == len([c for c in again["cells"] if c["status"] == "ok"])  # type: ignore[union-attr]
    assert any("nothing ran" in n for n in again["notes"])  # type: ignore[union-attr]
    assert again["cells"] == first["cells"] or all(  # type: ignore[union-attr]
        a["stdout"] == b["stdout"]
        for a, b in zip(again["cells"], first["cells"], strict=True)  # type: ignore[arg-type]
    )
    path.write_text(path.read_text().replace("'last', 1", "'last', 2"))
    edited = _json_run(path)
    cells = edited["cells"]
    assert isinstance(cells, list)
    assert [c["origin"] for c in cells] == ["restored", "restored", "executed"]
    # Random numbers come from the snapshot: the last cell sees the first run's draws.
    drawn = first["cells"][0]["stdout"].split()[1]  # type: ignore[index]
    assert drawn in cells[2]["stdout"]


@pytest.mark.parametrize(
    ("name", "throw"),
    [("analysis.js", t) for t in THROWS] + [("strict.js", THROWS[0]), ("uses_lib.js", THROWS[3])],
)
def test_edited_cell_now_throws_reruns_nothing(project: Path, name: str, throw: str) -> None:
    """The most common edit, a mistake in the last cell: node's exact report, from the
    snapshot before it (no earlier cell runs again)."""
    path = project / name
    tonic("run", "--plain", "--engine", "criu", str(path), cwd=project)
    path.write_text(path.read_text().rstrip("\n") + "\n" + throw + "\n")
    _same_as_fresh(project, name)
    resumed = _json_run(path)  # from the same snapshot (a view run captures values)
    cells = [c for c in resumed["cells"] if c["status"] != "empty"]  # type: ignore[union-attr]
    ran = [c["index"] for c in cells if c["origin"] == "executed" and c["status"] != "not-run"]
    assert set(ran) <= {cells[-1]["index"]}, resumed["notes"]  # no earlier cell again


@pytest.mark.parametrize(
    ("typo", "afresh"),
    [("console.log('total', totl);", False), ("console.log('total', totl(1));", True)],
    ids=["a misspelt variable", "a misspelt function"],
)
def test_a_typo_in_sloppy_code_is_nodes_report(project: Path, typo: str, afresh: bool) -> None:
    """An undeclared name in edited sloppy code: node's report from the snapshot before
    the edit; only when the name is called does the run go afresh (V8 would point the
    eval's ReferenceError at the name, node at the expression before it), and nothing
    of the aborted restore shows."""
    path = project / "analysis.js"
    tonic("run", "--plain", "--engine", "criu", str(path), cwd=project)
    path.write_text(path.read_text() + typo + "\n")
    _same_as_fresh(project, "analysis.js")
    resumed = _json_run(path)
    assert ("ran afresh" in " ".join(resumed["notes"])) == afresh, resumed["notes"]  # type: ignore[arg-type]
    if not afresh:
        cells = [c for c in resumed["cells"] if c["status"] != "empty"]  # type: ignore[union-attr]
        ran = [c["index"] for c in cells if c["origin"] == "executed" and c["status"] != "not-run"]
        assert set(ran) <= {cells[-1]["index"]}, resumed["notes"]


def test_child_process_and_worker_travel_too(project: Path) -> None:
    """An early cell's child process and worker thread are restored with the snapshot."""
    path = project / "children.js"
    _same(path)
    _json_run(path)  # the view keeps its own snapshots (they also record values)
    for extra in (3, 0, 4):
        path.write_text(
            path.read_text().replace(
                next(ln for ln in path.read_text().splitlines() if ln.startswith("const extra")),
                f"const extra = {extra};",
            )
        )
        record = _json_run(path)
        assert record["restored"] == 3, record["notes"]
        _same(path)


def test_concurrent_runs_of_one_notebook(project: Path) -> None:
    path = project / "analysis.js"
    expected = node(path)
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tonic", "run", "--plain", "--engine", "criu", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=project,
        )
        for _ in range(3)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert out == expected.stdout
        assert err == expected.stderr
        assert proc.returncode == expected.code
    got = tonic("cache", "ls", "--json")
    assert got.code == 0
    _same(path)


def _busy_notebook(cells: int, ms: int) -> str:
    return "\n".join(
        f"// %% cell {i}\nconst block{i} = Buffer.alloc({i} * 1e6, {i});\n"
        f"{{ const t = Date.now(); while (Date.now() - t < {ms}); }}\n"
        f"console.log('cell {i}', block{i}.length);\n"
        for i in range(1, cells + 1)
    )


def test_kill_9_during_checkpoints_leaves_the_cache_consistent(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    from tonic.store import Store
    from tonic.store.ingest import settled

    # A cache of its own: the session's would make it wait for every earlier test's
    # ingest workers (78 s of 80, measured)
    monkeypatch.setenv("TONIC_CACHE", str(project / "cache"))
    path = project / "busy.js"
    path.write_text(_busy_notebook(12, 40))
    argv = [sys.executable, "-m", "tonic", "run", "--plain", "--engine", "criu", str(path)]
    for delay in (0.25, 0.8, 1.4):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        path.write_text(path.read_text().replace("cell 12'", f"cell 12 {delay}'"))
    store = Store()
    with settled(store.root):
        pass
    for info in store.snapshots():
        with tempfile.TemporaryDirectory() as dest:
            store.materialize(info.id, Path(dest))  # every published snapshot is whole
    assert tonic("cache", "gc").code == 0
    _same(path)
    _same(path)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_files_travel_with_the_snapshots(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Appending cells re-run after a rewind leave the files of a first `node FILE`."""
    path = project / "files.js"
    pristine = tmp_path_factory.mktemp("pristine")
    for f in TIMETRAVEL.iterdir():
        shutil.copy(f, pristine / f.name)
    for value in (1, 2, 3, 3, 4):
        text = re.sub(r"'cell 3: ' \+ \d+", f"'cell 3: ' + {value}", path.read_text())
        path.write_text(text)
        fresh = tmp_path_factory.mktemp("fresh")
        for f in pristine.iterdir():
            shutil.copy(f, fresh / f.name)
        (fresh / "files.js").write_text(text)
        expected = node(fresh / "files.js")
        got = tonic("run", "--plain", "--engine", "criu", str(path), cwd=project)
        assert (got.stdout, got.stderr, got.code) == (
            expected.stdout,
            expected.stderr,
            expected.code,
        ), got.describe()
        assert _files(project) == {**_files(fresh), "files.js": text.encode()}
    _json_run(path)
    path.write_text(path.read_text().replace("'cell 3: ' + 4", "'cell 3: ' + 5"))
    assert _json_run(path)["restored"] == 2  # cells 1-2; cell 3 was edited


def test_a_file_edited_by_hand_is_its_new_starting_state(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """tonic neither refuses nor reverts a file someone else changed since its last run:
    the run is what `node FILE` does to the files as they are now."""
    path = project / "files.js"
    assert tonic("run", "--plain", "--engine", "criu", str(path), cwd=project).code == 0
    (project / "log.txt").write_text("my own notes\n")
    (project / "input.txt").write_text("one\ntwo\n")  # read by cell 1
    path.write_text(path.read_text().replace("'cell 3: ' + 1", "'cell 3: ' + 7"))
    fresh = tmp_path_factory.mktemp("fresh")
    for f in project.iterdir():
        shutil.copy(f, fresh / f.name)
    expected = node(fresh / "files.js")
    got = tonic("run", "--plain", "--engine", "criu", str(path), cwd=project)
    assert (got.stdout, got.stderr, got.code) == (expected.stdout, expected.stderr, 0)
    assert _files(project) == _files(fresh)


APPEND_BY = {
    # the kernel keeps the file before the main thread first changes it: every run starts
    # from the file as it was before the first one
    "main thread": "require('fs').appendFileSync(__dirname + '/input.txt', 'more\\n');",
    # a child's change is only seen after it happened: the file as the first run left it
    # is where the later runs start
    "child process": "require('child_process').execSync('echo more >> input.txt', "
    "{ cwd: __dirname });",
}


@pytest.mark.parametrize("writer", sorted(APPEND_BY))
def test_a_file_that_existed_before_the_notebook(
    project: Path, tmp_path_factory: pytest.TempPathFactory, writer: str
) -> None:
    """A file that existed before the notebook's first run, which a cell appends to: every
    run equals `node FILE` on the files the run starts from."""
    path = project / "append.js"
    path.write_text(
        f"// %% append\n{APPEND_BY[writer]}\n\n"
        "// %% last\nconsole.log(require('fs').readFileSync(__dirname + '/input.txt', 'utf8'));\n"
    )
    starting = (project / "input.txt").read_bytes()
    for edit in range(4):
        path.write_text(path.read_text() + f"console.log({edit});\n")
        fresh = tmp_path_factory.mktemp("fresh")
        for f in project.iterdir():
            if f.is_file():
                shutil.copy(f, fresh / f.name)
        (fresh / "input.txt").write_bytes(starting)
        expected = node(fresh / "append.js")
        got = tonic("run", "--plain", "--engine", "criu", str(path), cwd=project)
        assert (got.stdout, got.stderr, got.code) == (expected.stdout, expected.stderr, 0)
        assert _files(project) == _files(fresh)
        if edit == 0 and writer == "child process":
            starting = (project / "input.txt").read_bytes()


def test_es_module_reruns_when_an_imported_module_changes(project: Path) -> None:
    path = project / "esm_nb.mjs"
    _same(path)
    _same(path)  # unchanged: the stored run
    helper = project / "esm_helper.mjs"
    helper.write_text(helper.read_text().replace("hello", "goodbye"))
    _same(path)
    path.write_text(path.read_text().replace("21", "22"))
    _same(path)  # an edited ES module resumes


def test_short_cells_are_not_snapshotted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pauses after less than TONIC_SNAPSHOT_MIN_MS of cell time are not dumped: the
    resumed run starts from the last snapshot before them and equals node."""
    _criu_or_skip()
    busy = "{ const t = Date.now(); while (Date.now() - t < 120); }"
    cells = [f"// %% slow\n{busy}\nconsole.log('slow', Math.random() < 1);\n"]
    cells += [f"// %% quick {i}\nconsole.log('quick {i}');\n" for i in range(1, 4)]
    path = tmp_path / "short.js"
    path.write_text("\n".join(cells))
    monkeypatch.setenv("TONIC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TONIC_SNAPSHOT_MIN_MS", "50")
    _json_run(path)
    listing = json.loads(tonic("cache", "ls", "--json").stdout)
    assert sorted(s["cell"] for s in listing["snapshots"]) == [1]
    path.write_text(path.read_text().replace("'quick 3'", "'quick three'"))
    run = _json_run(path)
    assert [c["origin"] for c in run["cells"]][:2] == ["restored", "executed"]
    _same(path)


@pytest.mark.parametrize(
    "edit",
    [
        "let total = 2;",  # redeclares a `let` of cell 1: node reports it before running
        "}",  # unbalanced: a syntax error
        "'use strict'; with (Math) { max(1, 2); }",
    ],
)
def test_early_error_after_an_edit(project: Path, edit: str) -> None:
    """An edit that gives the file an early error: node prints it and runs nothing, and
    so does the resumed run (the kernel compiles the new file before the rest)."""
    path = project / "early.js"
    path.write_text(
        "// %% one\nlet total = 1;\nconsole.log('one', total);\n\n"
        "// %% two\nconsole.log('two');\n\n// %% three\nconsole.log('three');\n"
    )
    _same(path)
    path.write_text(path.read_text().replace("console.log('three');", edit))
    _same(path)


@pytest.mark.parametrize("engine", ["criu", "docker"])
def test_sigterm_ends_the_kernel(tmp_path: Path, engine: str) -> None:
    """tonic stopped with SIGTERM while a cell spins ends its kernel too."""
    require_engine(engine)
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "spin.js"
    path.write_text("// %% a\nconsole.log(process.pid);\n\n// %% b\nwhile (true) {}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tonic", "run", "--plain", "--engine", engine, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert no_kernel_left(path), "a kernel still runs the notebook"


@pytest.mark.parametrize(
    ("engine", "restored"),
    [("criu", False), ("criu", True), ("replay", False)],
    ids=["criu-fresh", "criu-restored", "replay"],
)
def test_sigkill_of_tonic_ends_the_kernel(tmp_path: Path, engine: str, restored: bool) -> None:
    """tonic killed outright (no chance to clean up) while a cell spins: the kernel ends
    too, fresh or restored from a snapshot (criu: its watchdog, which also removes the
    run's private folder; replay: node dies with its parent)."""
    require_engine(engine)
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "spin.js"
    first = "// %% a\nconsole.log('a');\n\n// %% b\nconsole.log('b');\n"
    if restored:
        path.write_text(first)
        assert tonic("run", "--plain", str(path)).code == 0
    path.write_text(first + "\n// %% c\nwhile (true) {}\n")
    private = tmp_path / "tmp"
    private.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tonic", "run", "--plain", "--engine", engine, str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, TMPDIR=str(private)),
    )

    # (A continued run holds its output back until it ends: wait for the kernel instead.)
    deadline = time.monotonic() + 20
    while not kernels_running(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kernels_running(path), "no kernel started"
    time.sleep(0.5)  # well into the endless cell
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert no_kernel_left(path), "a kernel still runs the notebook"
    if engine == "criu":
        deadline = time.monotonic() + 10
        while list(private.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(private.iterdir()) == [], "the killed run left its folder"
