"""The commands as a user meets them: the notebook view, --json, arguments, stdin, --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, ROOT, node, require_engine, tonic

NB = b"""// %% Setup
const xs = [1, 2, 3];
console.log('setup', xs.length);

// %% [markdown]
// Some prose.

// %% Sum
xs.reduce((a, b) => a + b, 0)

// %% Boom
console.error('about to fail');
null.boom;

// %% Never
console.log('never');
"""


def _write(tmp: Path, data: bytes, name: str = "nb.js") -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def test_view_shows_cells_values_errors(tmp_path: Path) -> None:
    got = tonic("run", str(_write(tmp_path, NB)))
    out = got.stdout.decode()
    assert got.code == 1
    # A cell that prints gets its header at its first output, its mark when it ends.
    assert "▸ [1] lines 1-3  Setup\nsetup 3\n✓ [1]" in out
    assert "Some prose." in out
    assert "=> 6" in out
    assert "▸ [4] lines 11-13  Boom\nabout to fail\n" in out
    assert "✗ [4]" in out
    assert "TypeError: Cannot read properties of null (reading 'boom')" in out
    assert "· [5] lines 15-16  Never  not run" in out
    assert "3/4 cells ran · exit code 1" in out


def test_json_record(tmp_path: Path) -> None:
    got = tonic("run", "--json", str(_write(tmp_path, NB)))
    record = json.loads(got.stdout)
    assert got.code == 1
    assert record["engine"] in ("criu", "replay")  # the default: the first that works
    assert record["kind"] == "cjs"
    assert record["format"] == "percent"
    cells = record["cells"]
    assert [c["status"] for c in cells] == ["ok", "empty", "ok", "error", "not-run"]
    assert cells[0]["stdout"] == "setup 3\n"
    assert cells[2]["value"] == "6"
    assert cells[3]["stderr"].startswith("about to fail\n")
    assert "TypeError" in cells[3]["error"]
    assert all(isinstance(c["ms"], float) for c in cells if c["status"] == "ok")


def test_script_arguments_and_stdin(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        b"console.log(process.argv.slice(2));\n\n"
        b"console.log(require('fs').readFileSync(0, 'utf8').trim());\n",
    )
    plain = subprocess.run(
        [sys.executable, "-m", "tonic", "run", "--plain", str(path), "--", "a", "--b"],
        input=b"from stdin\n",
        capture_output=True,
        check=False,
    )
    expected = subprocess.run(
        ["node", str(path), "a", "--b"], input=b"from stdin\n", capture_output=True, check=False
    )
    assert plain.stdout == expected.stdout == b"[ 'a', '--b' ]\nfrom stdin\n"


def test_signal_exit_is_nodes(tmp_path: Path) -> None:
    path = _write(tmp_path, b"console.log('x');\n\nprocess.kill(process.pid, 'SIGTERM');\n")
    assert tonic("run", "--plain", str(path)).code == node(path).code == -15


@pytest.mark.parametrize(
    ("code", "args", "status", "said"),
    [
        ("while (true);\n", ["--timeout", "0.5"], 124, "stopped by --timeout · exit code 124"),
        (
            "process.kill(process.pid, 'SIGTERM');\n",
            [],
            -15,
            "node died of SIGTERM · exit code 143",
        ),
        ("process.exitCode = 3;\n", [], 3, "1/1 cells ran · exit code 3"),
    ],
)
def test_the_summary_says_the_exit_code_tonic_exits_with(
    tmp_path: Path, code: str, args: list[str], status: int, said: str
) -> None:
    path = _write(tmp_path, code.encode())
    out = tonic("run", "--engine", "replay", *args, str(path))
    assert out.code == status and said in out.stdout.decode(), out.describe()


def test_help_teaches() -> None:
    top = tonic("--help").stdout.decode()
    assert "run" in top and "cells" in top
    run_help = tonic("run", "--help").stdout.decode()
    for word in ("--plain", "--json", "--engine", "--timeout", "replay", "Examples"):
        assert word in run_help


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("rnu", "Did you mean 'run'?"), ("serv", "Did you mean one of: 'serve', 'server'?")],
)
def test_a_mistyped_command_is_suggested_once(typed: str, meant: str) -> None:
    out = tonic(typed)
    err = out.stderr.decode()
    assert out.code == 2 and meant in err and err.count("Did you mean") == 1, err


def test_cells_json(tmp_path: Path) -> None:
    got = tonic("cells", "--json", str(_write(tmp_path, NB)))
    record = json.loads(got.stdout)
    assert [c["title"] for c in record["cells"]] == ["Setup", None, "Sum", "Boom", "Never"]
    assert record["cells"][0]["declarations"] == [{"name": "xs", "kind": "const"}]


def test_demo_runs_like_node() -> None:
    demo = FIXTURES / "demo.js"
    assert tonic("run", "--plain", str(demo), cwd=ROOT).stdout == node(demo, cwd=ROOT).stdout
    view = tonic("run", str(demo), cwd=ROOT)
    assert view.code == 0
    assert "4/4 cells ran" in view.stdout.decode()


@pytest.mark.parametrize(
    ("package", "env", "option", "expected"),
    [
        ({"tonic": {"engine": "replay"}}, {}, [], "replay"),
        ({"tonic": {"engine": "replay"}}, {"TONIC_ENGINE": "criu"}, [], "criu"),
        ({"tonic": {"engine": "criu"}}, {"TONIC_ENGINE": "criu"}, ["-e", "replay"], "replay"),
        ({"tonic": {"engine": "warp"}}, {}, [], "error: unknown engine 'warp'"),
        ({"tonic": {"engin": "replay"}}, {}, [], "unknown \"tonic\" setting 'engin'"),
        ({"tonic": "replay"}, {}, [], '"tonic" must be an object'),
    ],
)
def test_project_default_engine(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    package: dict[str, object],
    env: dict[str, str],
    option: list[str],
    expected: str,
) -> None:
    """package.json "tonic": {"engine": ...} is the project's default; $TONIC_ENGINE and
    --engine win over it; a bad setting is one line."""
    if expected == "criu":
        require_engine("criu")
    monkeypatch.delenv("TONIC_ENGINE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "package.json").write_text(json.dumps(package))
    path = tmp_path / "nb.js"
    path.write_text("console.log(1);\n")
    got = tonic("run", "--json", *option, str(path), cwd=tmp_path)
    if expected in ("replay", "criu"):
        assert got.code == 0, got.describe()
        assert json.loads(got.stdout)["engine"] == expected
    else:
        assert got.code == 2 and expected in got.stderr.decode(), got.describe()
        assert len(got.stderr.decode().strip().splitlines()) == 1


def test_marker_inside_a_statement_is_named(tmp_path: Path) -> None:
    """`tonic cells`, the view and --json name the line of a `// %%` that starts no cell."""
    path = _write(tmp_path, b"// %% one\nconst x = 1\n// %% two\n+ 2\nconsole.log(x)\n")
    warning = "line 3: this `// %%` is inside a statement (lines 2-4), so it starts no cell"
    assert f"warning: {warning}\n" in tonic("cells", str(path)).stdout.decode()
    assert json.loads(tonic("cells", "--json", str(path)).stdout)["warnings"] == [warning]
    assert f"note: {warning}\n" in tonic("run", "-e", "replay", str(path)).stdout.decode()
    record = json.loads(tonic("run", "--json", "-e", "replay", str(path)).stdout)
    assert record["warnings"] == [warning]
    plain = tonic("run", "--plain", "-e", "replay", str(path))
    assert plain.stdout == b"3\n" and plain.stderr == b""
