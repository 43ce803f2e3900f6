"""The run right after another resumes from the dumps its ingest worker has not stored
yet (store/landing.py): it waits for no worker, even one that never goes on."""

from __future__ import annotations

import contextlib
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
