"""Nothing a notebook does to itself breaks tonic: with its builtins replaced, tonic's
result is node's, fresh and resumed (the conformance cases 80 and 81 run them fresh)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE, node, require_engine, tonic

# (case, text in it, what it becomes: an edit of a cell after the damage)
EDITS = [
    ("80_broken_builtins.js", 'write("cell 6");', 'write("cell 6, edited " + n);\n\nn += 1;'),
    ("81_broken_builtins_uncaught.js", "fail();", 'writeSync(1, "edited\\n");\nfail();'),
]


def _same_as_node(path: Path, *extra: str) -> dict[str, object]:
    """`tonic run --plain` equals `node FILE`; then the view's record of a run."""
    expected = node(path)
    got = tonic("run", "--plain", "--engine", "criu", *extra, str(path), cwd=path.parent)
    assert (got.stdout, got.stderr, got.code) == (
        expected.stdout,
        expected.stderr,
        expected.code,
    ), got.describe()
    view = tonic("run", "--json", "--engine", "criu", str(path), cwd=path.parent)
    assert view.code == expected.code, view.describe()
    record: dict[str, object] = json.loads(view.stdout)
    return record


@pytest.mark.parametrize(("case", "old", "new"), EDITS, ids=[e[0] for e in EDITS])
def test_resumed_after_the_damage_equals_node(
    tmp_path: Path, case: str, old: str, new: str
) -> None:
    """Fresh, then edited after the damage: restored from the snapshots and continued."""
    require_engine("criu")
    path = tmp_path / case
    shutil.copy(CONFORMANCE / case, path)
    _same_as_node(path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    record = _same_as_node(path)
    restored = record["restored"]
    assert isinstance(restored, int) and restored >= 2, record["notes"]
