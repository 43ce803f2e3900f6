"""`tonic check`, the recorded-outputs file, `tonic hook install`, and the pre-commit
framework (the real `pre-commit` package) refusing a commit of a broken notebook."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, Outcome, tonic
from tonic.outputs import FORMAT

GOOD = """// %% Setup
const xs = [1, 2, 3];
console.log('setup', xs.length);

// %% Sum
xs.reduce((a, b) => a + b, 0)
"""
BROKEN = """// %% Setup
const cfg = null;

// %% Read the config
console.log('port', cfg.port);

// %% Never
console.log('never');
"""

CASES = [
    # (file name, content, status, parts of the line)
    ("good.js", GOOD, "ok", ["2 cells"]),
    (
        "broken.js",
        BROKEN,
        "FAIL",
        [
            'cell 2 "Read the config" (lines 4-5)',
            "TypeError: Cannot read properties of null (reading 'port')",
            "at broken.js:5:",
        ],
    ),
    ("exit.js", "console.log('x');\nprocess.exitCode = 3;\n", "FAIL", ["exited with code 3"]),
    (
        "later.mjs",
        "setTimeout(() => { throw new RangeError('late'); }, 1);\n",
        "FAIL",
        ["after the last cell: RangeError: late"],
    ),
    (
        "syntax.cjs",
        "// %% a\nconst a = 1;\n\n// %% b\nconst = 2;\n",
        "FAIL",
        ['cell 2 "b" (lines 4-5): SyntaxError: Unexpected token'],
    ),
    ("skipped.js", "// tonic: skip\nthrow new Error('vendored');\n", "skip", ["tonic: skip"]),
    (
        "shebang.js",
        "#!/usr/bin/env node\n//tonic:skip\nprocess.exit(1);\n",
        "skip",
        ["tonic: skip"],
    ),
    ("comments.js", "// only a comment\n/* and another */\n", "skip", ["no code cells"]),
    ("empty.js", "", "skip", ["no code cells"]),
    ("types.d.ts", "declare const x: number;\n", "skip", ["a TypeScript declaration file"]),
    ("notes.md", "# not a notebook\n", "skip", ["not a .js, .cjs, .mjs, .ts, .cts or .mts file"]),
]


def check(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Outcome:
    if env is None:
        return tonic("check", *args, cwd=cwd, timeout=120)
    proc = subprocess.run(
        [sys.executable, "-m", "tonic", "check", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return Outcome(proc.stdout, proc.stderr, proc.returncode)


@pytest.mark.parametrize(("name", "content", "status", "parts"), CASES)
def test_check_verdicts(
    tmp_path: Path, name: str, content: str, status: str, parts: list[str]
) -> None:
    (tmp_path / name).write_text(content)
    got = check(name, cwd=tmp_path)
    line = got.stdout.decode().splitlines()[0]
    assert line.startswith(f"{status:<4} {name}: "), got.describe()
    for part in parts:
        assert part in line, line
    assert got.code == (1 if status == "FAIL" else 0), got.describe()


def test_check_many_files_names_each(tmp_path: Path) -> None:
    (tmp_path / "good.js").write_text(GOOD)
    (tmp_path / "broken.js").write_text(BROKEN)
    got = check("good.js", "broken.js", "missing.js", cwd=tmp_path)
    lines = got.stdout.decode().splitlines()
    assert got.code == 1
    assert lines[0].startswith("ok   good.js: ")
    assert lines[1].startswith("FAIL broken.js: cell 2")
    assert lines[2] == "FAIL missing.js: no such file"
    assert lines[3] == "tonic check: 2 of 3 files failed"
    assert got.stderr == b""  # no traceback


def test_second_check_resumes_despite_hook_variables(tmp_path: Path) -> None:
    """git sets GIT_AUTHOR_DATE (and more) for hooks, different at each commit; they do
    not reach the snapshot key, so an unchanged notebook is replayed."""
    (tmp_path / "good.js").write_text(GOOD)
    runs = []
    for n in (1, 2):
        env = dict(
            os.environ,
            GIT_AUTHOR_DATE=f"@{1700000000 + n} +0000",
            GIT_INDEX_FILE=f"/tmp/next-index-{n}.lock",
            PRE_COMMIT="1",
        )
        runs.append(check("good.js", cwd=tmp_path, env=env))
    assert all(r.code == 0 for r in runs)
    from tonic import settings
    from tonic.engines import ENGINES

    if ENGINES["criu"](settings.current()).availability().ok:
        assert "restored" not in runs[0].stdout.decode()
        assert "2 cells, 2 restored" in runs[1].stdout.decode(), runs[1].describe()


NB_WITH_PATH = """// %% Where
console.log('data at', require('node:path').join(__dirname, 'data.csv'));

// %% Value
({ answer: 42 })
"""


def test_outputs_file_update_match_and_stale(tmp_path: Path) -> None:
    nb = tmp_path / "analysis.js"
    nb.write_text(NB_WITH_PATH)
    outputs = tmp_path / "analysis.js.outputs.json"
    none = check("--outputs", "analysis.js", cwd=tmp_path)
    assert none.code == 0 and "no analysis.js.outputs.json to compare" in none.stdout.decode()

    wrote = check("--update-outputs", "analysis.js", cwd=tmp_path)
    assert wrote.code == 0 and "wrote analysis.js.outputs.json" in wrote.stdout.decode()
    text = outputs.read_text()
    record = json.loads(text)
    assert record["format"] == FORMAT
    assert record["notebook"] == "analysis.js"
    assert record["cells"][0]["stdout"] == "data at ./data.csv\n"  # folder written `.`
    assert record["cells"][1]["value"] == "{ answer: 42 }"
    assert str(tmp_path) not in text and '"ms"' not in text and "seconds" not in text

    # Deterministic: the same notebook elsewhere records the same file.
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(nb, other / "analysis.js")
    assert check("--update-outputs", "analysis.js", cwd=other).code == 0
    assert (other / "analysis.js.outputs.json").read_text() == text

    same = check("--outputs", "analysis.js", cwd=tmp_path)
    assert same.code == 0 and "matches analysis.js.outputs.json" in same.stdout.decode()

    nb.write_text(NB_WITH_PATH.replace("answer: 42", "answer: 43"))
    stale = check("--outputs", "analysis.js", cwd=tmp_path)
    line = stale.stdout.decode().splitlines()[0]
    assert stale.code == 1
    assert line.startswith("FAIL analysis.js: analysis.js.outputs.json is stale: cell 2 value")
    assert 'recorded "{ answer: 42 }", now "{ answer: 43 }"' in line
    assert "tonic check --update-outputs analysis.js" in line
    assert check("--update-outputs", "analysis.js", cwd=tmp_path).code == 0
    assert check("--outputs", "analysis.js", cwd=tmp_path).code == 0


# -- git hooks ---------------------------------------------------------------------------


def git(repo: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", **extra)
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    assert git(path, "init", "-q").returncode == 0
    return path


def commit_notebook(
    repo: Path, name: str, content: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    (repo / name).write_text(content)
    assert git(repo, "add", name).returncode == 0
    return git(repo, "commit", "-m", f"add {name}", **extra)


def test_hook_install_refuses_broken_commit(repo: Path) -> None:
    got = tonic("hook", "install", cwd=repo)
    assert got.code == 0, got.describe()
    hook = repo / ".git" / "hooks" / "pre-commit"
    assert os.access(hook, os.X_OK)
    assert hook.read_text().startswith("#!/bin/sh\n")

    refused = commit_notebook(repo, "broken.js", BROKEN)
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert 'FAIL broken.js: cell 2 "Read the config"' in out, out
    assert git(repo, "log", "--oneline").returncode != 0  # nothing committed

    (repo / "broken.js").unlink()
    assert git(repo, "rm", "-q", "--cached", "broken.js").returncode == 0
    passed = commit_notebook(repo, "good.js", GOOD)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok   good.js" in passed.stdout + passed.stderr
    again = tonic("hook", "install", cwd=repo)  # its own hook: rewritten without --force
    assert again.code == 0


def test_hook_install_refusals(repo: Path, tmp_path: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho mine\n")
    got = tonic("hook", "install", cwd=repo)
    assert got.code == 2
    assert "exists and is not tonic's hook; use --force" in got.stderr.decode()
    assert hook.read_text() == "#!/bin/sh\necho mine\n"
    forced = tonic("hook", "install", "--force", "--outputs", cwd=repo)
    assert forced.code == 0
    assert "check --staged --outputs" in hook.read_text()

    outside = tmp_path / "plain"
    outside.mkdir()
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "tonic", "hook", "install"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr
        == "tonic: error: not in a git repository (run `git init` first, or cd into one)\n"
    )


def test_hooks_manifest_is_valid_for_pre_commit() -> None:
    manifest = ROOT / ".pre-commit-hooks.yaml"
    validate = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    (hook,) = yaml.safe_load(manifest.read_text())
    assert hook["id"] == "tonic-check"
    assert hook["entry"] == "tonic check"
    assert hook["language"] == "python"
    files = re.compile(hook["files"])
    names = ("a.js", "b.cjs", "c.mjs", "d.json", "e.ts", "f.mts", "g.d.tsx", "h.js.map")
    assert [bool(files.search(n)) for n in names] == [
        True,
        True,
        True,
        False,
        True,
        True,
        False,
        False,
    ]


def test_pre_commit_framework_refuses_broken_notebook(repo: Path, tmp_path: Path) -> None:
    """The real pre-commit package, with the hook as a local `system` hook calling this
    tonic (the `python` hook of .pre-commit-hooks.yaml would pip-install tonic)."""
    tonic_bin = Path(sys.executable).parent / "tonic"
    config = {
        "repos": [
            {
                "repo": "local",
                "hooks": [
                    {
                        "id": "tonic-check",
                        "name": "tonic check",
                        "entry": f"{tonic_bin} check",
                        "language": "system",
                        "files": r"\.(js|cjs|mjs)$",
                    }
                ],
            }
        ]
    }
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    assert git(repo, "add", ".pre-commit-config.yaml").returncode == 0
    assert git(repo, "commit", "-q", "-m", "config").returncode == 0
    home = str(tmp_path / "pre-commit-home")
    installed = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"],
        cwd=repo,
        env=dict(os.environ, PRE_COMMIT_HOME=home),
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr

    refused = commit_notebook(repo, "broken.js", BROKEN, PRE_COMMIT_HOME=home)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "tonic check" in out and "Failed" in out, out
    assert 'FAIL broken.js: cell 2 "Read the config" (lines 4-5)' in out, out
    assert "TypeError: Cannot read properties of null (reading 'port')" in out
    assert git(repo, "log", "--oneline").stdout.count("\n") == 1  # only the config

    (repo / "broken.js").write_text(BROKEN.replace("cfg = null", "cfg = { port: 80 }"))
    assert git(repo, "add", "broken.js").returncode == 0
    passed = git(repo, "commit", "-m", "fixed", PRE_COMMIT_HOME=home)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout + passed.stderr


def tonic_repo(dest: Path) -> str:
    """This working tree (package, templates, hook manifest) as a git repository that
    pre-commit can install from; its commit."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("tonic", "templates"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    assert git(dest, "init", "-q").returncode == 0
    assert git(dest, "add", ".").returncode == 0
    assert git(dest, "commit", "-q", "-m", "tonic").returncode == 0
    return git(dest, "rev-parse", "HEAD").stdout.strip()


def test_pre_commit_hooks_yaml_installs_and_refuses(repo: Path, tmp_path: Path) -> None:
    """The published hook itself: pre-commit pip-installs tonic from the repository
    (language: python) and runs `tonic check`. Skipped when pip cannot install here."""
    source = tmp_path / "tonic-src"
    rev = tonic_repo(source)
    config = {"repos": [{"repo": str(source), "rev": rev, "hooks": [{"id": "tonic-check"}]}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    (repo / "broken.js").write_text(BROKEN)
    assert git(repo, "add", ".").returncode == 0
    home = str(tmp_path / "pre-commit-home")
    proc = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--files", "broken.js"],
        cwd=repo,
        env=dict(os.environ, PRE_COMMIT_HOME=home),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    if "An unexpected error has occurred" in out and "Installing environment" in out:
        pytest.skip(f"pre-commit could not pip-install tonic here: {out[-300:]}")
    assert proc.returncode == 1, out
    assert "tonic check (notebooks run without errors)" in out and "Failed" in out, out
    assert 'FAIL broken.js: cell 2 "Read the config" (lines 4-5)' in out, out
