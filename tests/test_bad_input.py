"""Bad input gets one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import node, tonic


@dataclass(frozen=True)
class BadInput:
    name: str
    make: Callable[[Path], Path]
    message: str  # expected in the one-line error


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path

    return make


BAD = [
    BadInput("missing path", lambda tmp: tmp / "nope.js", "no such file"),
    BadInput("directory", lambda tmp: tmp, "is a directory"),
    BadInput("binary", _file("bin.js", b"\x7fELF\x00\x01\x02"), "binary file"),
    BadInput("not utf-8", _file("latin1.js", "console.log('é')".encode("latin-1")), "not UTF-8"),
    BadInput("empty", _file("empty.js", b""), "empty file"),
    BadInput("blank", _file("blank.js", b"\n  \n"), "empty file"),
    BadInput("5 MB file", _file("huge.js", b"// padding\n" * (5 * 1024 * 1024 // 11 + 1)), "limit"),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
@pytest.mark.parametrize("command", [["run"], ["run", "--plain"], ["run", "--json"], ["cells"]])
def test_bad_input(tmp_path: Path, bad: BadInput, command: list[str]) -> None:
    path = bad.make(tmp_path)
    got = tonic(*command, str(path))
    err = got.stderr.decode()
    assert got.code != 0
    assert got.stdout == b""
    assert err.count("\n") == 1, err
    assert err.startswith("tonic: error: ")
    assert bad.message in err
    assert "Traceback" not in err


SYNTAX_ERRORS = {
    "invalid token": b"console.log('before');\n\nlet a = ;\n",
    "early error": b"console.log('never printed');\n\nlet x = 1;\n\nlet x = 2;\n",
    "unterminated template": b"const t = `abc\n\nconsole.log(t)\n",
}


@pytest.mark.parametrize("source", SYNTAX_ERRORS.values(), ids=SYNTAX_ERRORS.keys())
def test_syntax_error_plain_is_nodes_own(tmp_path: Path, source: bytes) -> None:
    path = tmp_path / "bad.js"
    path.write_bytes(source)
    expected = node(path)
    got = tonic("run", "--plain", str(path))
    assert (got.stdout, got.stderr, got.code) == (expected.stdout, expected.stderr, 1)


@pytest.mark.parametrize("source", SYNTAX_ERRORS.values(), ids=SYNTAX_ERRORS.keys())
def test_syntax_error_cells_matches_node_check(tmp_path: Path, source: bytes) -> None:
    path = tmp_path / "bad.js"
    path.write_bytes(source)
    check = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    got = tonic("cells", str(path))
    err = got.stderr.decode()
    assert got.code == 1
    assert err.count("\n") == 1
    where = check.stderr.splitlines()[0]  # "<file>:<line>"
    message = next(ln for ln in check.stderr.splitlines() if ln.startswith("SyntaxError"))
    assert err == f"tonic: error: {where}: {message}\n"


def test_syntax_error_esm(tmp_path: Path) -> None:
    path = tmp_path / "bad.mjs"
    path.write_bytes(b"import fs from 'fs';\n\nexport const = 1;\n")
    expected = node(path)
    assert (tonic("run", "--plain", str(path)).stderr, expected.code) == (expected.stderr, 1)
    assert tonic("cells", str(path)).code == 1


def test_cell_that_never_ends(tmp_path: Path) -> None:
    path = tmp_path / "loop.js"
    path.write_bytes(b"console.log('start');\n\nwhile (true) {}\n\nconsole.log('never');\n")
    got = tonic("run", "--timeout", "1", str(path))
    err = got.stderr.decode()
    assert got.code == 124
    assert (
        err == "tonic: error: cell 2 (lines 3-3) did not finish within 1 s (--timeout); "
        "the run was stopped\n"
    )
    assert b"start" in got.stdout


def test_event_loop_that_never_ends(tmp_path: Path) -> None:
    path = tmp_path / "interval.js"
    path.write_bytes(b"setInterval(() => {}, 1000);\n")
    got = tonic("run", "--plain", "--timeout", "0.5", str(path))
    assert got.code == 124
    assert "the event loop after the last cell did not finish" in got.stderr.decode()


def test_plain_and_json_together_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "a.js"
    path.write_bytes(b"1\n")
    got = tonic("run", "--plain", "--json", str(path))
    assert got.code == 2
    assert got.stderr.decode() == "tonic: error: --plain and --json cannot be combined\n"


def test_unknown_engine(tmp_path: Path) -> None:
    path = tmp_path / "a.js"
    path.write_bytes(b"1\n")
    got = tonic("run", "--engine", "warp", str(path))
    assert got.code == 2
    assert got.stderr.decode().startswith(
        "tonic: error: unknown engine 'warp' (known: criu, docker, replay)"
    )
