"""The run right after another resumes from the dumps its ingest worker has not stored
yet (store/landing.py): it waits for no worker, even one that never goes on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.engines.test_full_cache import BIG, _env, _ingest_worker
from tests.helpers import node, require_engine, tonic
from tonic.store.ingest import settled
from tonic.store.layout import TMP


def test_an_edit_resumes_while_the_worker_is_stopped(tmp_path: Path) -> None:
    require_engine("criu")
    cache, flag = tmp_path / "cache", tmp_path / "flag"
    path = tmp_path / "big.js"
    path.write_text(BIG)
    env = _env(cache, FLAG=str(flag), TONIC_SNAPSHOT_MIN_MS="0")
    cmd = [sys.executable, "-m", "tonic", "run", "--plain", "--engine", "criu", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while worker is None and time.monotonic() < deadline and proc.poll() is None:
            worker = _ingest_worker(proc.pid)
            time.sleep(0.002)
        assert worker is not None, "the run started no ingest worker"
        os.kill(worker, signal.SIGSTOP)  # it stores nothing more until the end
        flag.touch()
        out, err = proc.communicate(timeout=60)
        assert (out, proc.returncode) == (b"one 67108864\ntwo\n", 0), err
        assert any(p.name.startswith("landed.") for p in (cache / TMP).iterdir())
        path.write_text(BIG.replace("'two'", "'two, edited'"))
        why = tonic("why", str(path), "--plain", env=env, timeout=60)
        assert b"restores cells 1-1" in why.stdout, why.describe()
        got = tonic("run", "--plain", "--engine", "criu", str(path), env=env, timeout=60)
        assert got == node(path, env=env)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        with settled(cache):  # the worker stores what it has and lets go
            pass
    assert not any(p.name.startswith("landed.") for p in (cache / TMP).iterdir())


def test_a_restore_from_a_copy_since_removed_keeps_the_files_snapshots(tmp_path: Path) -> None:
    """The restore reads the images from a scratch copy (no hot cache) that is gone when
    the run next reads what the tree did: that read is taken in before, and the run still
    snapshots its files (it said it could not, and lost them)."""
    require_engine("criu")
    cache = tmp_path / "cache"
    env = _env(cache, TONIC_SNAPSHOT_MIN_MS="0", TONIC_HOT_CACHE="0")
    path = tmp_path / "nb.js"
    path.write_text("// %% one\nconsole.log('one');\n\n// %% two\nconsole.log('two', 1);\n")
    assert tonic("run", "--plain", "--engine", "criu", str(path), env=env).code == 0
    with settled(cache):  # stored: the next restore recreates the images from chunks
        pass
    path.write_text(path.read_text().replace("'two', 1", "'two', 2"))
    got = tonic("run", "--json", "--engine", "criu", str(path), env=env)
    run = json.loads(got.stdout)
    assert run["restored"] == 1, got.describe()
    assert not [n for n in run["notes"] if "no snapshots" in n], run["notes"]
