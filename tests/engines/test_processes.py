"""The kernel's processes as node's own: its pid, and detached children that outlive the
run. (How node dies of a signal is in the conformance cases 80-84.)"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import node, require_engine, tonic

PIDS = """\
// %% one
const first = [process.pid, process.ppid];
console.log('pid', process.pid, process.ppid);

// %% two
console.log('same', process.pid === first[0] && process.ppid === first[1], '{mark}');
"""


def _pids(
    path: Path, engine: str, mark: str, first: str = "one"
) -> tuple[tuple[int, int], dict[str, object]]:
    """(pid, ppid) as cell one printed them, and the run's record."""
    path.write_text(PIDS.replace("{mark}", mark).replace("// %% one", f"// %% {first}"))
    got = tonic("run", "--json", "--engine", engine, str(path), cwd=path.parent)
    assert got.code == 0, got.describe()
    record = json.loads(got.stdout)
    cells = record["cells"]
    assert cells[1]["stdout"] == f"same true {mark}\n"
    words = cells[0]["stdout"].split()
    return (int(words[1]), int(words[2])), record


@pytest.mark.parametrize("engine", ["criu"])
def test_fresh_runs_have_pids_of_their_own_and_a_restore_keeps_its_pid(
    engine: str, tmp_path: Path
) -> None:
    """Two fresh runs see different pids (not the namespace's 2 every time), and a
    parent that is not the namespace's init (tonic's own pid); a run restored from cell
    one's snapshot is the process that printed cell one's pid, with the same parent."""
    require_engine(engine)
    path = tmp_path / "pids.js"
    pid, record = _pids(path, engine, "a")
    assert record["restored"] == 0
    assert pid[0] > 2 and pid[1] not in (0, 1, pid[0])
    restored_pid, record = _pids(path, engine, "b")  # cell two edited: resume after one
    assert record["restored"] == 1, record["notes"]
    assert restored_pid == pid
    other, record = _pids(path, engine, "c", first="one again")  # a new title: fresh
    assert record["restored"] == 0
    assert other[0] != pid[0]


DETACHED = """\
const { spawn } = require('child_process');
console.log('start');

// %%
const child = spawn('sh', ['-c', 'sleep {delay}; echo late > {out}'], {
  detached: true,
  stdio: 'ignore',
});
child.unref();
console.log('spawned', typeof child.pid);
"""


def _detached(tmp_path: Path, delay: float) -> tuple[Path, Path]:
    out = tmp_path / "late.txt"
    path = tmp_path / "detached.js"
    path.write_text(DETACHED.replace("{delay}", str(delay)).replace("{out}", str(out)))
    return path, out


def _appears(path: Path, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text() == "late\n":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("engine", ["node", "replay", "criu"])
def test_a_detached_child_outlives_the_run(engine: str, tmp_path: Path) -> None:
    """As under node: tonic exits when node does (the child holds none of its pipes),
    and the child goes on to write its file afterwards."""
    path, out = _detached(tmp_path, 2.0)
    started = time.monotonic()
    if engine == "node":
        got = node(path)
    else:
        require_engine(engine)
        got = tonic("run", "--plain", "--engine", engine, str(path), cwd=tmp_path)
    took = time.monotonic() - started
    assert (got.code, got.stdout) == (0, b"start\nspawned number\n"), got.describe()
    assert got.stderr == b""
    assert not out.exists(), f"the run waited for the child ({took:.2f} s)"
    assert _appears(out, 10.0), "the detached child did not outlive the run"


@pytest.mark.parametrize("engine", ["criu"])
def test_a_timeout_ends_node_and_its_children(engine: str, tmp_path: Path) -> None:
    """tonic's own kill paths end the whole namespace, detached children included."""
    require_engine(engine)
    path, out = _detached(tmp_path, 1.5)
    path.write_text(path.read_text() + "\n// %%\nsetInterval(() => {}, 1000);\n")
    got = tonic("run", "--plain", "--timeout", "1", "--engine", engine, str(path), cwd=tmp_path)
    assert got.code != 0 and b"--timeout" in got.stderr, got.describe()
    assert b"Traceback" not in got.stderr
    assert not _appears(out, 3.0), "a child of a timed-out run lived on"


def test_without_a_compiler_the_criu_engine_says_why(tmp_path: Path) -> None:
    """No C compiler for the init (and none built yet): --engine criu is one line of
    error, and the default engine falls back to replay, with node's output."""
    require_engine("criu")
    path = tmp_path / "nb.js"
    path.write_text("console.log('one');\n\n// %%\nconsole.log('two');\n")
    env = dict(os.environ, TONIC_CACHE=str(tmp_path / "cache"), CC=str(tmp_path / "no-cc"))
    got = tonic("run", "--plain", "--engine", "criu", str(path), env=env)
    assert got.code == 2 and got.stdout == b"", got.describe()
    assert b"to build tonic's init" in got.stderr and len(got.stderr.splitlines()) == 1
    env.pop("TONIC_ENGINE", None)
    got = tonic("run", "--plain", str(path), env=env)
    assert (got.code, got.stdout, got.stderr) == (0, b"one\ntwo\n", b""), got.describe()


AT_FORK = """
import os, signal, sys
sys.path.insert(0, {root!r})
from tonic.engines.criu.tool import Criu
sent = []
def hook():  # the signal comes just as the fork is done, while its hooks run
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), {signum})
os.register_at_fork(after_in_parent=hook)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGINT, signal.default_int_handler)  # (ignored in a background job)
Criu('/bin/true', (4, 1)).run('x')
print("the signal was lost")
"""


@pytest.mark.parametrize("signum", ["signal.SIGTERM", "signal.SIGINT"])
def test_a_signal_during_a_fork_is_not_lost(signum: str) -> None:
    """SIGTERM (tonic's end; a warm server's worker when its server dies) or Ctrl-C just
    as tonic forks CRIU (a child with a preexec_fn, as the kernel is): handled, not lost
    in the fork's at-fork hooks, which ignore what a handler raises."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = AT_FORK.format(root=str(ROOT), signum=signum)
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert b"the signal was lost" not in got.stdout, got.stderr.decode()
    assert got.returncode in (143, -2, 130), got
