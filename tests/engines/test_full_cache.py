"""No leftovers, and a full cache disk (issue 14): a killed ingest worker's dumps go at
the next run; a cache on a full disk (a small tmpfs) runs the notebook without
snapshots, as node runs it, with one line on stderr; a cache that fills up mid-run goes
on without snapshots, leaves nothing half-written, and resumes once there is room."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    FAULTS,
    Outcome,
    fill_disk,
    mount_tmpfs,
    node,
    require_engine,
    tonic,
    unmount,
)
from tonic.store import Store
from tonic.store.hot import check as hot_check
from tonic.store.ingest import settled
from tonic.store.layout import Owner, owner_of

FULL = b"tonic: the cache's disk is full: ran without snapshots\n"
STOPPED = b"tonic: the cache's disk is full: no snapshots from cell 3 on\n"

WAITS = """const fs = require('fs');
const data = Array.from({ length: 1000 }, (_, i) => i * 2);
console.log('one', data.length);

const sum = data.reduce((a, b) => a + b, 0);
console.log('two', sum);

fs.writeFileSync(process.env.READY, 'ready');
while (!fs.existsSync(process.env.FLAG)) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
}
console.log('three');

const four = sum + 4;
console.log('four', four);

console.error('five', four);
process.exitCode = 3;
"""


def _env(cache: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TONIC_CACHE": str(cache), "TONIC_SERVER": "off", **extra}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size): a fresh tmpfs of that size (unmounted at the end, once the ingest
    workers of a cache on it are done)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        mount_tmpfs(point, size)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        if (point / "cache").is_dir():
            with settled(point / "cache"):
                pass
        unmount(point)


def _engine_args(engine: str | None) -> list[str]:
    return ["--engine", engine] if engine else []


# engine (None: the default) -> what tonic adds to node's stderr
ENGINES = [("criu", FULL), (None, FULL), ("replay", b"")]


@pytest.mark.parametrize(("engine", "warning"), ENGINES, ids=["criu", "default", "replay"])
def test_a_full_cache_disk_runs_without_snapshots(
    tmpfs: Callable[[str], Path], tmp_path: Path, engine: str | None, warning: bytes
) -> None:
    require_engine("criu")
    disk = tmpfs("2m")
    fill_disk(disk)
    path = tmp_path / "nb.js"
    path.write_text(
        "let a = 1;\nconsole.log('a', a);\n\nconsole.error('b');\nprocess.exitCode = 3;\n"
    )
    expected = node(path)
    for _ in range(2):  # and again: nothing the first run left in the way
        got = tonic("run", "--plain", *_engine_args(engine), str(path), env=_env(disk / "cache"))
        assert got == Outcome(expected.stdout, expected.stderr + warning, 3), got.describe()
    shown = tonic("run", "--json", *_engine_args(engine), str(path), env=_env(disk / "cache"))
    assert shown.code == 3 and shown.stderr == warning, shown.describe()
    assert json.loads(shown.stdout)["engine"] == "replay"
    assert not list((disk / "cache").rglob("tmp/*"))
    FAULTS["a full cache disk"] += 1


def _whole(cache: Path, elsewhere: Path) -> None:
    """Nothing half-written in the cache: no staging entry, every snapshot and object
    whole, every tag link and hot folder complete."""
    with settled(cache):
        pass
    store = Store(cache)
    assert list((cache / "tmp").iterdir()) == []
    snapshots = {info.id for info in store.snapshots()}
    assert {p.name for p in (cache / "snapshots").iterdir()} == snapshots
    for snapshot_id in snapshots:
        store.materialize(snapshot_id, elsewhere / snapshot_id)  # verifies every chunk
    base = cache
    for obj in (cache / "objects").glob("*/*"):
        assert store._objects.read(base, obj.name) is not None, obj
    links = {link.name for link in (cache / "index").glob("*/*")}
    assert links == snapshots
    hot = cache / "hot"
    if hot.is_dir():
        folders = {p.name for p in hot.iterdir() if p.is_dir()}
        assert folders == {p.stem for p in hot.glob("*.ready")}
        for folder in folders:  # whole: every file as its digest says
            assert hot_check(cache, folder) is None, folder
    assert not [p for p in cache.rglob(".*") if p.is_file()]  # no half-made memo or build


@pytest.mark.parametrize("engine", ["criu", "replay"])
def test_a_cache_that_fills_up_mid_run(
    tmpfs: Callable[[str], Path], tmp_path: Path, engine: str
) -> None:
    require_engine(engine)
    disk = tmpfs("256m")
    cache = disk / "cache"
    path, ready, flag = tmp_path / "nb.js", tmp_path / "ready", tmp_path / "flag"
    path.write_text(WAITS)
    env = _env(cache, READY=str(ready), FLAG=str(flag))
    flag.touch()
    expected = node(path, env=env)
    ready.unlink()
    flag.unlink()
    cmd = [sys.executable, "-m", "tonic", "run", "--plain", "--engine", engine, str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            published = len(list(cache.glob("snapshots/*"))) if engine == "criu" else 2
            if ready.exists() and published >= 2:  # the first two cells' snapshots are in
                break
            time.sleep(0.02)
        fill_disk(disk)
        flag.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    warning = STOPPED if engine == "criu" else b""
    got = Outcome(out, err, proc.returncode)
    assert got == Outcome(expected.stdout, expected.stderr + warning, 3), got.describe()
    if engine == "criu":
        _whole(cache, tmp_path / "materialized")
    (disk / "filler").unlink()  # room again: the next run snapshots and resumes
    path.write_text(WAITS.replace("'five'", "'five, edited'"))
    expected = node(path, env=env)
    again = tonic("run", "--plain", "--engine", engine, str(path), env=env)
    assert again == expected, again.describe()
    shown = tonic("run", "--json", "--engine", engine, str(path), env=env)
    result = json.loads(shown.stdout)
    assert shown.stderr == b"" and result["exit_code"] == 3
    if engine == "criu":
        assert result["restored"] >= 2, result["notes"]
        _whole(cache, tmp_path / "materialized-again")
    FAULTS["a full cache disk"] += 1


BIG = """const crypto = require('crypto');
const big = crypto.randomBytes(64 << 20);  // slow to store
console.log('one', big.length);

const fs = require('fs');
while (!fs.existsSync(process.env.FLAG)) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
}
console.log('two');
"""


def _ingest_worker(parent: int) -> int | None:
    """The ingest worker the run `parent` started, if it runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            ppid = int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
            if ppid == parent and b"tonic.store.ingest" in (entry / "cmdline").read_bytes():
                return int(entry.name)
    return None


def test_the_next_run_removes_a_killed_workers_dumps(tmp_path: Path) -> None:
    """kill -9 of the ingest worker a run started, while it stores a dump: its dump
    stays in the cache's tmp/ until the next run, which removes it at once; the staging
    entry of a live process survives that run and a gc."""
    require_engine("criu")
    cache, flag = tmp_path / "cache", tmp_path / "flag"
    path = tmp_path / "big.js"
    path.write_text(BIG)
    env = _env(cache, FLAG=str(flag))
    cmd = [sys.executable, "-m", "tonic", "run", "--plain", "--engine", "criu", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        worker, stored = None, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            worker = worker or _ingest_worker(proc.pid)
            chunks = len(list((cache / "objects").glob("*/*")))
            if worker is not None and not stored:
                stored = chunks
            elif worker is not None and chunks >= stored + 3:  # it is storing the dump
                break
            time.sleep(0.005)
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        flag.touch()
        out, _ = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert out == b"one 67108864\ntwo\n"
    # Its dump's folder (beside it, maybe, the object it was writing when killed)
    dumps = [p for p in (cache / "tmp").iterdir() if p.is_dir()]
    assert dumps, "the killed worker left no dump (it finished first?)"
    assert max(sum(f.stat().st_size for f in d.iterdir()) for d in dumps) > 64 << 20
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        owner = Owner.of(sleeper.pid)
        assert owner is not None
        live = cache / "tmp" / owner.name("dump")
        live.mkdir()
        small = tmp_path / "small.js"
        small.write_text("console.log('small');\n")
        assert tonic("run", "--plain", "--engine", "criu", str(small), env=env) == node(small)
        with settled(cache):
            pass
        assert [p.name for p in (cache / "tmp").iterdir()] == [live.name]
        assert tonic("cache", "gc", env=env).code == 0
        assert live.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert owner_of(live.name) == owner and not owner.alive()
    assert tonic("cache", "gc", env=env).code == 0
    assert list((cache / "tmp").iterdir()) == []
    FAULTS["kill -9 of the ingest worker"] += 1
