"""The notebook view and `--json` of the notebooks in fixtures/view, against golden files
in fixtures/expected/view (set TONIC_UPDATE_GOLDEN=1 to rewrite them): values wherever a
cell's last expression stands, none for undefined, node's own text of an error on a line
with a value capture, and a warning for a cell marker inside a statement."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, node, require_engine, tonic

VIEW = FIXTURES / "view"
GOLDEN = FIXTURES / "expected" / "view"
TIME_RE = re.compile(r"\b\d+(?:\.\d+)? (ms|s)\b")
# node's own parts of its reports, which differ between node versions
NODE_RE = re.compile(r"node:internal/[\w/.-]+:\d+:\d+|Node\.js v[\d.]+")


def notebooks() -> list[Path]:
    return sorted(p for p in VIEW.iterdir() if p.suffix in (".js", ".mjs", ".cjs"))


def _golden(name: str, got: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("TONIC_UPDATE_GOLDEN") or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")


def _here(text: str) -> str:
    return NODE_RE.sub("<node>", text.replace(str(VIEW), "<dir>"))


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_view(path: Path) -> None:
    got = tonic("run", "--engine", "replay", path.name, cwd=VIEW)
    assert got.code == node(path).code, got.describe()
    _golden(path.name + ".view.txt", TIME_RE.sub(r"T \1", _here(got.stdout.decode())))


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_json(path: Path) -> None:
    got = tonic("run", "--json", "--engine", "replay", path.name, cwd=VIEW)
    record = json.loads(got.stdout)
    # What node wrote, exactly: the captures left no trace in error reports and stacks.
    expected = node(path)
    parts = [*record["cells"], record["after"]]
    assert "".join(p["stdout"] for p in parts) == expected.stdout.decode()
    assert "".join(p["stderr"] for p in parts) == expected.stderr.decode()
    record.update(seconds=0, stats={})
    for cell in record["cells"]:
        cell["ms"] = None
    _golden(path.name + ".json", _here(json.dumps(record, indent=2, ensure_ascii=False)) + "\n")


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_plain_captures_nothing(path: Path) -> None:
    got = tonic("run", "--plain", "--engine", "replay", path.name, cwd=VIEW)
    assert got == node(path)


@pytest.mark.parametrize("name", ["errors.js", "values.mjs"])
def test_criu_fresh_and_stored(name: str) -> None:
    """Under the criu engine, the run shown again from the store holds the same texts:
    corrected once, as the cells finished."""
    require_engine("criu")
    path = VIEW / name
    expected = node(path)
    runs = []
    for _ in range(2):
        got = tonic("run", "--json", "--engine", "criu", name, cwd=VIEW)
        record = json.loads(got.stdout)
        parts = [*record["cells"], record["after"]]
        assert "".join(p["stderr"] for p in parts) == expected.stderr.decode()
        runs.append([(c["value"], c["error"]) for c in record["cells"]])
    assert runs[0] == runs[1]


def test_a_report_shows_once_on_one_channel(tmp_path: Path) -> None:
    """node's report of a file that does not compile shows once, fresh and from the store,
    also when stdout and stderr are one pipe (node then writes it on the one channel)."""
    import subprocess
    import sys

    require_engine("criu")
    path = tmp_path / "broken.js"
    path.write_text("const a = 1;\n\nconsole.log(a +);\n")
    for _ in range(2):
        got = subprocess.run(
            [sys.executable, "-m", "tonic", "run", "--engine", "criu", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert got.stdout.count(b"SyntaxError: Unexpected token") == 1, got.stdout.decode()
