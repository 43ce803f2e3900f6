"""Time travel with the criu engine: every resumed run equals a fresh `node FILE`."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, node, require_engine, tonic
from tests.timetravel_edits import random_edit

TIMETRAVEL = FIXTURES / "timetravel"
EDITS_PER_NOTEBOOK = int(os.environ.get("TONIC_EDITS", "52"))
NOTEBOOKS = ["analysis.js", "strict.js", "uses_lib.js", "errors.js"]


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
def test_edit_sequence(project: Path, name: str) -> None:
    """Random edits; after each, a resumed `tonic run --plain` equals `node FILE`."""
    rng = random.Random(f"tonic-{name}")
    path = project / name
    original = path.read_text()
    lib = project / "lib_notebook.js"
    lib_original = lib.read_text()
    counts: Counter[str] = Counter()
    _same(path)
    text = original
    for step in range(EDITS_PER_NOTEBOOK):
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
        _same(path)
    total = sum(counts.values())
    print(f"\n{name}: {total} edits, each resumed run equal to node: {dict(counts)}")


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
