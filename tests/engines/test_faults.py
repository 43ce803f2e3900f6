"""Faults in the cache and in CRIU: a damaged image is never restored, a damaged
snapshot means a fresh run (never exit 2), and a CRIU that hangs is ended with all it
started. After each, the run equals `node FILE`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import (
    criu_killed_after,
    criu_wrapper,
    described_process,
    gone,
    kernels_running,
    no_kernel_left,
    node,
    require_engine,
    tonic,
)
from tonic.engines.criu.tool import Criu
from tonic.store.ingest import settled
from tonic.store.layout import HOT, OBJECTS, SNAPSHOTS

NOTEBOOK = """// %% data
const data = Array.from({ length: 200000 }, (_, i) => (i * 7919) % 1000);
console.log('rows', data.length);

// %% sum
const sum = data.reduce((a, b) => a + b, 0);
console.log('sum', sum);

// %% last
console.log('last', 1, sum % 97);
"""


def _biggest(folder: Path) -> Path:
    return max((f for f in folder.iterdir() if f.is_file()), key=lambda f: f.stat().st_size)


def _flip(folder: Path) -> None:
    target = _biggest(folder)
    with open(target, "r+b") as f:
        f.seek(target.stat().st_size // 2)
        byte = f.read(64)
        f.seek(target.stat().st_size // 2)
        f.write(bytes(b ^ 0xFF for b in byte))


def _truncate(folder: Path) -> None:
    target = _biggest(folder)
    os.truncate(target, target.stat().st_size // 2)


def _record(folder: Path) -> None:
    folder.with_suffix(".ready").write_text('{"bytes": 12')


DAMAGES: dict[str, Callable[[Path], None]] = {
    "bytes flipped": _flip,
    "truncated to half": _truncate,
    "a file missing": lambda folder: _biggest(folder).unlink(),
    "the folder missing": shutil.rmtree,
    "its record damaged": _record,
}


def _fresh(tmp_path: Path, **env: str) -> tuple[Path, dict[str, str]]:
    """A notebook run once under criu in a cache of its own, its snapshots stored."""
    require_engine("criu")
    cache = tmp_path / "cache"
    environ = {**os.environ, "TONIC_CACHE": str(cache), **env}
    path = tmp_path / "nb.js"
    path.write_text(NOTEBOOK)
    first = tonic("run", "--plain", "--engine", "criu", str(path), env=environ)
    assert first.code == 0, first.describe()
    with settled(cache):
        pass
    path.write_text(NOTEBOOK.replace("'last', 1", "'last', 2"))
    return path, environ


def _viewed(path: Path, env: dict[str, str]) -> dict[str, object]:
    """A `--json` run whose output equals node's; its report."""
    got = tonic("run", "--json", "--engine", "criu", str(path), env=env)
    view: dict[str, object] = json.loads(got.stdout)
    cells = view["cells"]
    assert isinstance(cells, list)
    assert "".join(c["stdout"] for c in cells) == node(path).stdout.decode(), got.describe()
    assert got.code == 0, got.describe()
    return view


@pytest.mark.parametrize("damage", list(DAMAGES.values()), ids=list(DAMAGES))
def test_damaged_unpacked_images_are_never_restored(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    """The unpacked copy of a snapshot, damaged: the resumed run restores the store's
    copy (it still resumes) and says so."""
    path, env = _fresh(tmp_path)
    kept = Path(env["TONIC_CACHE"]) / HOT
    hot = [f for f in kept.iterdir() if f.is_dir()] if kept.is_dir() else []
    assert hot, "no unpacked images kept; tonic why says:\n" + tonic(
        "why", "--plain", str(path), env=env
    ).stdout.decode(errors="replace")
    for folder in hot:
        damage(folder)
    view = _viewed(path, env)
    assert "damaged" in str(view["notes"]), view["notes"]
    assert view["restored"], view["notes"]


def test_damaged_store_means_a_fresh_run(tmp_path: Path) -> None:
    """A damaged chunk in the store (no unpacked copy): the run goes afresh, equal to
    node, with one note; never exit 2. The damaged snapshot is removed."""
    path, env = _fresh(tmp_path, TONIC_HOT_CACHE="0")
    cache = Path(env["TONIC_CACHE"])
    images = {
        key
        for manifest in (cache / SNAPSHOTS).glob("*/manifest.json")
        for entry in json.loads(manifest.read_text())["files"].values()
        for key in entry["chunks"]
    }
    chunks = [f for f in (cache / OBJECTS).rglob("*") if f.name in images]
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(chunk.read_bytes()[::-1])
    view = _viewed(path, env)
    assert "damaged" in str(view["notes"]) and "ran afresh" in str(view["notes"]), view["notes"]
    assert not view["restored"]


def test_a_criu_past_its_deadline_is_ended_with_all_it_started(tmp_path: Path) -> None:
    """What CRIU started (a half-restored tree) is killed with it, by pid."""
    started = tmp_path / "pids"
    fake = Criu("/bin/sh", (4, 1))
    script = f"sleep 60 & echo $! > {started}; sleep 60"
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        fake.run("-c", script, timeout=1)
    assert time.monotonic() - t0 < 30
    assert gone(int(started.read_text()))


@pytest.mark.parametrize(
    "ending",
    [
        "require('child_process').execSync('kill -KILL ' + process.pid);",
        "process.kill(process.pid, 'SIGTERM');",
    ],
)
def test_a_run_a_signal_ended_is_not_kept(tmp_path: Path, ending: str) -> None:
    """A kernel killed by a signal (which may have come from outside): the unchanged
    rerun runs again rather than show the kill as the notebook's result."""
    require_engine("criu")
    path = tmp_path / "killed.js"
    path.write_text(f"console.log('a');\n\n{ending}\n")
    want = node(path)
    for _ in range(2):
        got = tonic("run", "--plain", "--engine", "criu", str(path))
        assert (got.stdout, got.stderr, got.code) == (want.stdout, want.stderr, want.code)
    for _ in range(2):  # (a view run keeps records of its own: it also captures values)
        view = json.loads(tonic("run", "--json", "--engine", "criu", str(path)).stdout)
        assert not any("nothing ran" in note for note in view["notes"]), view["notes"]


@pytest.mark.parametrize("delay", ["0.01", "0.03", "0.05", "0.1", "0.15", "0.3"])
def test_a_run_whose_dump_was_killed_is_not_kept(tmp_path: Path, delay: str) -> None:
    """CRIU killed in the middle of a dump: that run is not kept as the notebook's
    outcome (node may have died of it), and the next run equals node."""
    require_engine("criu")
    wrapper, delay_file = criu_killed_after(tmp_path)
    delay_file.write_text(delay)
    path = tmp_path / "nb.js"
    path.write_text(NOTEBOOK)
    env = {**os.environ, "TONIC_CRIU": str(wrapper), "TONIC_CACHE": str(tmp_path / "cache")}
    first = tonic("run", "--plain", "--engine", "criu", str(path), env=env, timeout=120)
    want = node(path)
    if first.code == want.code:
        assert first.stdout == want.stdout, first.describe()
    env.pop("TONIC_CRIU")
    again = tonic("run", "--plain", "--engine", "criu", str(path), env=env)
    assert (again.stdout, again.stderr, again.code) == (want.stdout, want.stderr, want.code), (
        again.describe()
    )


KILLED = """const fs = require('fs');
fs.appendFileSync('log.txt', 'one\\n');
console.log('cell 1');

// %% two
fs.appendFileSync('log.txt', 'two\\n');
fs.writeFileSync('made.txt', 'new');
{FINISH}
"""
SPIN = "console.log('spinning');\nwhile (true);"
DONE = "console.log(fs.readFileSync('log.txt', 'utf8'), fs.readFileSync('made.txt', 'utf8'));"


@pytest.mark.parametrize(
    ("server", "before"),
    [("off", False), ("on", False), ("off", True)],
    ids=["", "served", "after-a-run"],
)
def test_a_killed_run_is_rewound_by_the_next(tmp_path: Path, server: str, before: bool) -> None:
    """tonic killed (kill -9) while a cell that wrote files runs: the next run knows
    those writes as the notebook's and rolls them back, so it equals node in a pristine
    folder; nothing is refused, and the kernel is gone."""
    require_engine("criu")
    project = tmp_path / "project"
    project.mkdir()
    path = project / "nb.js"
    env = {**os.environ, "TONIC_CACHE": str(tmp_path / "cache"), "TONIC_SERVER": server}
    if before:  # a whole run first: the killed one writes paths the last run wrote too
        path.write_text(KILLED.replace("{FINISH}", DONE))
        tonic("run", "--plain", "--engine", "criu", str(path), cwd=project, env=env)
    killed = KILLED.replace("{FINISH}", SPIN)
    if before:  # killed in cell 1 (fresh), before any pause marked what it writes
        killed = killed.replace("console.log('cell 1');", SPIN)
    path.write_text(killed)
    if server == "on":
        env["TONIC_RUNTIME_DIR"] = str(tmp_path / "run")
        subprocess.run([sys.executable, "-m", "tonic", "server", "start"], env=env, check=True)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tonic", "run", "--plain", "--engine", "criu", str(path)],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        while b"spinning" not in proc.stdout.readline():
            pass
        proc.kill()
        proc.wait()
        assert no_kernel_left(path)
        path.write_text(KILLED.replace("{FINISH}", DONE))
        got = tonic("run", "--plain", "--engine", "criu", str(path), cwd=project, env=env)
        left = {f.name: f.read_bytes() for f in project.iterdir()}
        pristine = tmp_path / "pristine"
        pristine.mkdir()
        (pristine / "nb.js").write_text(path.read_text())
        want = node(pristine / "nb.js")
        assert (got.stdout, got.stderr, got.code) == (want.stdout, want.stderr, want.code)
        assert left == {f.name: f.read_bytes() for f in pristine.iterdir()}
    finally:
        if server == "on":
            subprocess.run([sys.executable, "-m", "tonic", "server", "stop"], env=env, check=False)


CRIU_WITH_SCRIPT = """#!/bin/sh
# CRIU, but a {command} runs an action script.
if [ "$1" = {command} ]; then
  exec {real} "$@" --action-script {script}
fi
exec {real} "$@"
"""
# At an action: kill -9 of CRIU ($PPID) or of its caller (tonic), then sleep (a process
# CRIU forked, orphaned when CRIU dies).
KILLING = """#!/bin/sh
if [ "$CRTOOLS_SCRIPT_ACTION" = {action} ]; then
  echo $$ > {pidfile}
  victim=$PPID
  [ {victim} = tonic ] && victim=$(ps -o ppid= -p "$PPID" | tr -d ' ')
  kill -KILL "$victim"
  exec sleep {sleep}
fi
exit 0
"""


def _killing(folder: Path, command: str, action: str, victim: str, sleep: int) -> tuple[Path, Path]:
    """A CRIU for $TONIC_CRIU whose `command` (dump, restore) kills `victim` (criu, tonic)
    at `action`, its script then sleeping `sleep` seconds; and where the script says its
    pid."""
    script, pidfile = folder / "killing", folder / "killing.pid"
    script.write_text(KILLING.format(action=action, pidfile=pidfile, victim=victim, sleep=sleep))
    script.chmod(0o755)
    return criu_wrapper(folder, CRIU_WITH_SCRIPT, command=command, script=script), pidfile


def test_tonic_killed_during_a_restore_leaves_no_tree(tmp_path: Path) -> None:
    """kill -9 of tonic while CRIU restores: CRIU dies with it, and the tasks it had made
    (orphaned, waiting in CRIU's restorer with their signals blocked) are ended too;
    the next run equals node."""
    path, env = _fresh(tmp_path, TONIC_SERVER="off")
    wrapper, _ = _killing(tmp_path, "restore", "pre-resume", "tonic", 5)
    killed = tonic(
        "run", "--plain", "--engine", "criu", str(path), env={**env, "TONIC_CRIU": str(wrapper)}
    )
    assert killed.code == -9, killed.describe()
    assert no_kernel_left(path), kernels_running(path)
    got = tonic("run", "--plain", "--engine", "criu", str(path), env=env)
    want = node(path)
    assert (got.stdout, got.stderr, got.code) == (want.stdout, want.stderr, want.code)


@pytest.mark.parametrize("victim", ["tonic", "criu"])
def test_a_dump_killed_leaves_nothing_of_criu(tmp_path: Path, victim: str) -> None:
    """kill -9 of tonic while CRIU dumps (CRIU dies with it) or of CRIU alone: what CRIU
    had forked (here its action script; at every start, a helper of its kernel checks
    that sleeps until CRIU ends it) is ended too; the next run equals node."""
    require_engine("criu")
    env = {**os.environ, "TONIC_CACHE": str(tmp_path / "cache"), "TONIC_SERVER": "off"}
    path = tmp_path / "nb.js"
    path.write_text(NOTEBOOK)
    wrapper, pidfile = _killing(tmp_path, "dump", "pre-dump", victim, 120)
    killed = tonic(
        "run", "--plain", "--engine", "criu", str(path), env={**env, "TONIC_CRIU": str(wrapper)}
    )
    want = node(path)
    if victim == "tonic":
        assert killed.code == -9, killed.describe()
    else:
        assert (killed.stdout, killed.code) == (want.stdout, want.code), killed.describe()
    forked = int(pidfile.read_text())
    if not gone(forked):
        left = described_process(forked)
        os.kill(forked, signal.SIGKILL)
        raise AssertionError(f"CRIU's action script still runs: {left}")
    assert no_kernel_left(path), kernels_running(path)
    got = tonic("run", "--plain", "--engine", "criu", str(path), env=env)
    assert (got.stdout, got.stderr, got.code) == (want.stdout, want.stderr, want.code)
