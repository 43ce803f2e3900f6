"""The edit-sequence differential test for what cells are observed to use: after every
edit (of the notebook, of a file a cell reads, of the environment, of how and where it is
run, with another program writing beside it), a resumed `tonic run --plain` equals
`node FILE` in stdout, stderr, exit code and every file in the folder."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, Outcome, node, require_engine
from tests.timetravel.edits import add_cell, change_literal
from tests.timetravel.test_edits import EDITS_RUN, _files

OBSERVED = FIXTURES / "observed"
EDITS = int(os.environ.get("TONIC_OBSERVED_EDITS", "60"))


class Run:
    """How the notebook is run this time: its environment, its working directory, through
    `bash -c` or not, with another program writing into its folder or not."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.env = dict(os.environ, TONIC_NB_VAR="a", SHLVL="1")
        self.cwd = project
        self.bash = False
        self.foreign: str | None = None

    def tonic(self, path: Path) -> Outcome:
        argv = [sys.executable, "-m", "tonic", "run", "--plain", "--engine", "criu", str(path)]
        if self.bash:
            argv = ["bash", "-c", " ".join(argv)]
        writer = None
        if self.foreign is not None:
            target = self.project / "foreign.txt"
            code = (
                f"import time; time.sleep(0.05); open({str(target)!r}, 'w').write({self.foreign!r})"
            )
            writer = subprocess.Popen([sys.executable, "-c", code])
        try:
            proc = subprocess.run(
                argv, cwd=self.cwd, env=self.env, capture_output=True, timeout=120, check=False
            )
        finally:
            if writer is not None:
                writer.wait()
        return Outcome(proc.stdout, proc.stderr, proc.returncode)


def _same_as_node(run: Run, fresh_dir: Callable[[], Path], name: str) -> None:
    """tonic in the project; node in a copy of the project as tonic found it (its own
    files in their starting state: the pristine fixture's, the foreign file as the other
    program left it)."""
    project = run.project
    got = run.tonic(project / name)
    after_tonic = _files(project)
    fresh = fresh_dir()
    for f in OBSERVED.iterdir():
        shutil.copy(f, fresh / f.name)
    for kept in (name, "data.json", "foreign.txt"):
        if kept in after_tonic:
            (fresh / kept).write_bytes(after_tonic[kept])
    cwd = fresh if run.cwd == project else fresh.parent
    expected = node(fresh / name, cwd=cwd, env=run.env)
    if (got.stdout, got.stderr, got.code) != (expected.stdout, expected.stderr, expected.code):
        pytest.fail(
            f"tonic:\n{got.describe()}\n=== node ===\n{expected.describe()}\n"
            f"=== notebook ===\n{(project / name).read_text()}"
        )
    assert after_tonic == _files(fresh), "the files differ from a fresh node run's"


def _code_edit(rng: random.Random, text: str) -> str:
    """A literal changed or a cell added; the worker's handshake stays as it is (an edit
    of it would only make both sides wait)."""

    def handshake(t: str) -> list[str]:
        return [line for line in t.splitlines() if "Atomics" in line or "shared" in line]

    for _ in range(50):
        edit = add_cell if rng.random() < 0.4 else change_literal
        new = edit(rng, text)
        if new is not None and new != text and handshake(new) == handshake(text):
            return new
    return text + "\n// %% added\nconsole.log('added');\n"


KINDS = ["code", "data", "env-read", "env-unread", "cwd", "bash-c", "shlvl", "foreign", "worker"]


def test_observed_edit_sequence(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    require_engine("criu")
    project = tmp_path / "project"
    project.mkdir()
    for f in OBSERVED.iterdir():
        shutil.copy(f, project / f.name)
    name = "observed.js"
    path = project / name
    original = path.read_text()
    rng = random.Random("tonic-observed")
    counts: Counter[str] = Counter()
    run = Run(project)

    def fresh() -> Path:
        return tmp_path_factory.mktemp("fresh") / "project"

    def fresh_dir() -> Path:
        folder = fresh()
        folder.mkdir()
        return folder

    _same_as_node(run, fresh_dir, name)
    for step in range(EDITS):
        run.cwd, run.bash, run.foreign = project, False, None
        kind = rng.choice(KINDS)
        if step % 15 == 14:
            kind = "reset"
            path.write_text(original)
        elif kind == "code":
            path.write_text(_code_edit(rng, path.read_text()))
        elif kind == "data":
            (project / "data.json").write_text(f'{{"v": {rng.randint(0, 99)}}}')
        elif kind == "env-read":
            run.env["TONIC_NB_VAR"] = rng.choice("abcdef")
        elif kind == "env-unread":
            run.env[f"TONIC_NB_OTHER_{rng.randint(0, 3)}"] = str(rng.randint(0, 9))
        elif kind == "cwd":
            run.cwd = project.parent
        elif kind == "bash-c":
            run.bash = True
        elif kind == "shlvl":
            run.env["SHLVL"] = str(rng.randint(1, 9))
        elif kind == "foreign":
            run.foreign = str(rng.randint(0, 999))
        elif kind == "worker":  # the last cell, which the worker runs too
            text = path.read_text()
            start = text.index("shared[1] = factor * ") + len("shared[1] = factor * ")
            end = text.index(";", start)
            path.write_text(text[:start] + str(rng.randint(0, 99)) + text[end:])
        counts[kind] += 1
        _same_as_node(run, fresh_dir, name)
    EDITS_RUN.update({f"criu:observed-{k}": n for k, n in counts.items()})
    print(f"\n{name}: {sum(counts.values())} edits, each resumed run equal to node: {dict(counts)}")
