"""The backbone: every conformance module gives node's exact bytes under `tonic run --plain`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE, node, require_engine, served_count, steady, tonic
from tonic.notebook.cells import KERNEL_NAME_RE

# The criu engine runs each case twice: fresh, then unchanged (shown from the store); the
# node matrix (Makefile) runs it once under each other node version.
CRIU_RUNS = int(os.environ.get("TONIC_CONFORMANCE_CRIU_RUNS", "2"))
CASE_RE = re.compile(r"^\d{2,3}_.*\.(js|cjs|mjs|ts|cts|mts)$")


def cases() -> list[Path]:
    return sorted(
        p
        for p in CONFORMANCE.rglob("*")
        if p.is_file() and CASE_RE.match(p.name) and "node_modules" not in p.parts
    )


def _id(p: Path) -> str:
    return str(p.relative_to(CONFORMANCE))


# The docker engine runs the same kernel as criu, in a container: its cases are those of
# what the container changes (output channels, exits and errors, process, paths and
# stacks, modules and ESM, a damaged global scope); the rest only costs a container each.
CONTAINED = re.compile(
    r"stdout|stderr|exit|process|argv|env|filename|stack|require|top_level|esm|unhandled|"
    r"uncaught|large|hashbang|broken|frozen|tampering|detect|type_"
)


def _engines(path: Path) -> list[str]:
    return ["replay", "criu", "criu-served", *(["docker"] if CONTAINED.search(path.name) else [])]


def test_enough_cases() -> None:
    assert len(cases()) >= 40
    assert {p.suffix for p in cases()} == {".js", ".cjs", ".mjs", ".ts", ".cts", ".mts"}


@pytest.mark.parametrize(
    ("engine", "path"),
    [
        (e, p)
        for e in ("replay", "criu", "docker", "criu-served")
        for p in cases()
        if e in _engines(p)
    ],
    ids=lambda v: _id(v) if isinstance(v, Path) else v,
)
def test_plain_equals_node(path: Path, engine: str, request: pytest.FixtureRequest) -> None:
    """Fresh, then (criu) again unchanged: shown from the snapshot store. `criu-served`:
    the criu engine, each command run by the warm server."""
    env = None
    if engine == "criu-served":
        engine, env = "criu", request.getfixturevalue("served")
    require_engine(engine)
    expected = node(path)
    before = served_count(env) if env else 0
    for _ in range(CRIU_RUNS if engine == "criu" else 1):
        got = tonic("run", "--plain", "--engine", engine, str(path), cwd=path.parent, env=env)
        assert got.stdout == expected.stdout, got.describe()
        assert steady(got.stderr) == steady(expected.stderr), got.describe()
        assert got.code == expected.code, got.describe()
    if env:
        assert served_count(env) == before + 2, "the server did not run the commands"


@pytest.mark.parametrize("path", cases(), ids=_id)
def test_cells_account_for_all_output(path: Path) -> None:
    """The per-cell record (--json) loses and invents nothing: it adds up to node's output,
    with no trace of the value captures (in node's error reports, in stacks)."""
    expected = node(path)
    got = tonic("run", "--json", "--engine", "replay", str(path), cwd=path.parent)
    assert got.code == expected.code, got.describe()
    record = json.loads(got.stdout)
    parts = [*record["cells"], record["after"]]
    stdout = "".join(p["stdout"] for p in parts)
    stderr = "".join(p["stderr"] for p in parts)
    assert stdout == expected.stdout.decode("utf-8", "replace")
    assert steady(stderr.encode()) == steady(expected.stderr)
    # Only a file node cannot parse, or one naming the pause sites, may run unsplit;
    # everything else pauses between cells.
    if not record["split"]:
        assert b"SyntaxError" in expected.stderr or KERNEL_NAME_RE.search(path.read_bytes()), (
            "file ran as one piece without a syntax error"
        )
    elif expected.code == 0 and not record["after"]["error"]:
        statuses = [c["status"] for c in record["cells"] if c["status"] != "empty"]
        assert not statuses or "ok" in statuses
