"""Nothing a notebook does to itself breaks tonic: with its builtins replaced, tonic's
result is node's, fresh and resumed (the conformance cases 80 and 81 run them fresh)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE, node, node_major, require_engine, tonic

# (case, text in it, what it becomes: an edit of a cell after the damage)
EDITS = [
    ("80_broken_builtins.js", 'write("cell 6");', 'write("cell 6, edited " + n);\n\nn += 1;'),
    ("81_broken_builtins_uncaught.js", "fail();", 'writeSync(1, "edited\\n");\nfail();'),
    ("88_frozen_builtins.js", "fail();", 'console.log("edited");\nfail();'),
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


# Writes TEXT to the two pipes of the notebook's process with the highest fds: tonic's
# channels (opened after libuv's own pipes, or moved by the clock shim to 1021 and 1022).
TO_THE_CHANNELS = """const fs = require("fs");
const pipes = fs.readdirSync("/proc/self/fd").map(Number).filter((fd) => {
  try { return fd > 2 && fs.readlinkSync("/proc/self/fd/" + fd).startsWith("pipe:"); }
  catch { return false; }
}).sort((a, b) => a - b);
for (const fd of pipes.slice(-2)) {
  try { fs.writeSync(fd, TEXT); } catch {}
}
console.log("one");

console.log("two");
"""


@pytest.mark.parametrize("engine", ["replay", "criu"])
@pytest.mark.parametrize(
    "text", ['"garbage\\n"', '"[".repeat(100000) + "\\n"'], ids=["not JSON", "deep"]
)
def test_garbage_on_the_event_channel_is_one_line(tmp_path: Path, engine: str, text: str) -> None:
    """A notebook writing to tonic's event channel: one line of error, no traceback."""
    require_engine(engine)
    path = tmp_path / "garbage.js"
    path.write_text(TO_THE_CHANNELS.replace("TEXT", text))
    got = tonic("run", "--plain", "--engine", engine, str(path), cwd=tmp_path)
    assert got.code == 2, got.describe()
    lines = got.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tonic: error: the kernel's event channel")


def test_closing_the_moved_channels_equals_node(tmp_path: Path) -> None:
    """Under the clock shim the channels are on fds 1021 and 1022 (in plain node, nothing
    is): a notebook closing them runs on as node does, unpaused."""
    require_engine("criu")
    path = tmp_path / "close.js"
    path.write_text(
        'const fs = require("fs");\n'
        "for (const fd of [3, 4, 1021, 1022]) { try { fs.closeSync(fd); } catch {} }\n"
        'console.log("one");\n\nconsole.log("two");\n\n'
        'setTimeout(() => console.log("three"), 1);\n'
    )
    expected = node(path)
    got = tonic("run", "--plain", "--engine", "criu", str(path), cwd=tmp_path)
    if node_major() >= 22 and b"libuv" in expected.stderr + got.stderr:
        # A documented rule: node >= 22 (libuv >= 1.45) keeps an io_uring on a low fd,
        # which CRIU cannot dump, so tonic's kernel runs without one (README): the fds
        # of node's own event loop differ, and closing them fails another of libuv's
        # checks. node dies of SIGABRT either way, after the same output.
        assert (got.stdout, got.code) == (expected.stdout, expected.code), got.describe()
        return
    assert (got.stdout, got.stderr, got.code) == (
        expected.stdout,
        expected.stderr,
        expected.code,
    ), got.describe()
