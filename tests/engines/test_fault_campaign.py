"""The fault campaign: faults injected at random moments (a fixed seed per kind), each
followed by a run that must equal `node FILE` in a pristine folder (stdout, stderr, exit
code and the files left), with no kernel left running. The counts are printed at the
end of the session (conftest.py)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engines.test_faults import _biggest
from tests.helpers import (
    FAULTS,
    criu_killed_after,
    criu_left,
    described_process,
    kernels_running,
    no_kernel_left,
    node,
    require_engine,
    tonic,
)
from tonic.store.ingest import settled
from tonic.store.layout import HOT, OBJECTS, SNAPSHOTS

NOTEBOOK = """// %% setup
const fs = require('fs');
fs.appendFileSync('log.txt', 'setup\\n');
const big = Array.from({{ length: 300000 }}, (_, i) => i * 3);
console.log('setup', big.length);

// %% slow
{{ const t = Date.now(); while (Date.now() - t < 200); }}
fs.appendFileSync('log.txt', 'slow\\n');
fs.writeFileSync('made.txt', String(big[12345]));
console.log('slow');

// %% last
console.log('last', {version}, fs.readFileSync('log.txt', 'utf8').split('\\n').length);
"""


class Campaign:
    """A project, a cache and the notebook's versions, for one kind of fault."""

    def __init__(self, root: Path, kind: str, **env: str) -> None:
        require_engine("criu")
        self.kind = kind
        self.root = root
        self.project = root / "project"
        self.project.mkdir()
        self.path = self.project / "nb.js"
        self.cache = root / "cache"
        self.env = {**os.environ, "TONIC_CACHE": str(self.cache), "TONIC_SERVER": "off", **env}
        self.version = 0
        self.rng = random.Random(f"tonic-faults-{kind}")

    def edit(self) -> None:
        self.version += 1
        self.path.write_text(NOTEBOOK.format(version=self.version))

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tonic", "run", "--plain", "--engine", "criu", str(self.path)],
            cwd=self.project,
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def run(self) -> None:
        """A run that goes to its end (whatever it shows)."""
        tonic("run", "--plain", "--engine", "criu", str(self.path), cwd=self.project, env=self.env)

    def settle(self) -> None:
        with settled(self.cache):
            pass

    def check(self, what: str) -> None:
        """After a fault: the next run (of an edited notebook) equals node in a pristine
        folder, and leaves the same files."""
        assert no_kernel_left(self.path), (
            f"{what}: a kernel still runs\n{kernels_running(self.path)}"
        )
        self.edit()
        got = tonic(
            "run", "--plain", "--engine", "criu", str(self.path), cwd=self.project, env=self.env
        )
        pristine = self.root / f"pristine-{self.version}"
        pristine.mkdir()
        shutil.copy(self.path, pristine / "nb.js")
        want = node(pristine / "nb.js")
        assert (got.stdout, got.stderr, got.code) == (want.stdout, want.stderr, want.code), (
            f"{what}\n{got.describe()}"
        )
        left = {f.name: f.read_bytes() for f in self.project.iterdir()}
        assert left == {f.name: f.read_bytes() for f in pristine.iterdir()}, what
        assert no_kernel_left(self.path), (
            f"{what}: a kernel still runs after the check\n{kernels_running(self.path)}"
        )
        left = criu_left(self.cache)
        assert not left, f"{what}: a CRIU of this cache still runs\n" + "\n".join(
            described_process(pid) or f"{pid}: gone" for pid in left
        )
        FAULTS[self.kind] += 1


def _kill_client(c: Campaign, i: int) -> str:
    c.edit()
    delay = c.rng.uniform(0.0, 1.5)
    proc = c.start()
    time.sleep(delay)
    proc.kill()
    proc.wait()
    return f"tonic killed {delay:.2f} s into run {i}"


def _kill_served(c: Campaign, i: int) -> str:
    """The warm server's worker, or the server itself, killed mid-command."""
    runtime = c.root / "runtime"
    env = {**c.env, "TONIC_SERVER": "on", "TONIC_RUNTIME_DIR": str(runtime)}
    subprocess.run([sys.executable, "-m", "tonic", "server", "start"], env=env, check=True)
    try:
        c.edit()
        delay = c.rng.uniform(0.0, 1.5)
        proc = c.start(env)
        time.sleep(delay)
        from tonic.commands.server import servers
        from tonic.procs import descendants, ids

        found = [info.pid for info in servers(str(runtime)) if info.pid]
        server = found[0] if found else None
        workers = (
            [p for p in descendants(server) if (got := ids(p)) and got[0] == server]
            if server
            else []
        )
        victim = ("tonic", "the server", "its worker")[i % 3]
        if victim == "the server" and server:
            os.kill(server, signal.SIGKILL)
        elif victim == "its worker" and workers:
            os.kill(workers[0], signal.SIGKILL)
        else:
            victim = "tonic"
            proc.kill()
        proc.wait()
        return f"the {victim} killed {delay:.2f} s into run {i}"
    finally:
        subprocess.run([sys.executable, "-m", "tonic", "server", "stop"], env=env, check=False)


def _kill_dump(c: Campaign, i: int) -> str:
    wrapper, delay_file = criu_killed_after(c.root)
    delay = c.rng.uniform(0.0, 0.3)
    delay_file.write_text(f"{delay:.3f}")
    c.edit()
    tonic(
        "run",
        "--plain",
        "--engine",
        "criu",
        str(c.path),
        cwd=c.project,
        env={**c.env, "TONIC_CRIU": str(wrapper)},
        timeout=120,
    )
    delay_file.write_text("")
    return f"CRIU's dump killed after {delay:.3f} s in run {i}"


def _damage(target: Path, rng: random.Random) -> str:
    """A random damage to one file: bytes flipped, truncated, emptied or removed."""
    size = target.stat().st_size
    how = rng.choice(["flip", "truncate", "empty", "remove"])
    if how == "flip" and size:
        at = rng.randrange(size)
        with open(target, "r+b") as f:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ (1 << rng.randrange(8))]))
    elif how == "truncate":
        os.truncate(target, rng.randrange(max(size, 1)))
    elif how == "empty":
        os.truncate(target, 0)
    else:
        target.unlink()
    return f"{how} {target.name}"


def _damage_hot(c: Campaign, i: int) -> str:
    c.edit()
    c.run()
    c.settle()
    folders = sorted(f for f in (c.cache / HOT).iterdir() if f.is_dir())
    assert folders, "no unpacked images"
    folder = c.rng.choice(folders)
    files = sorted(f for f in folder.iterdir() if f.is_file())
    target = c.rng.choice(files) if i % 2 else _biggest(folder)
    return f"unpacked image damaged in run {i}: {_damage(target, c.rng)}"


def _damage_store(c: Campaign, i: int) -> str:
    c.edit()
    c.run()
    c.settle()
    chunks = sorted(
        {
            key
            for manifest in (c.cache / SNAPSHOTS).glob("*/manifest.json")
            for entry in json.loads(manifest.read_text())["files"].values()
            for key in entry["chunks"]
        }
    )
    # Chunks an earlier damage removed are still named by that snapshot's manifest.
    present = [c.cache / OBJECTS / key[:2] / key for key in chunks]
    target = c.rng.choice([f for f in present if f.exists()])
    return f"stored chunk damaged in run {i}: {_damage(target, c.rng)}"


KINDS: dict[str, tuple[Callable[[Campaign, int], str], int, dict[str, str]]] = {
    "kill -9 of tonic mid-run": (_kill_client, 20, {}),
    "kill -9 of the warm server or its worker": (_kill_served, 10, {}),
    "CRIU killed mid-dump": (_kill_dump, 20, {}),
    "an unpacked image damaged": (_damage_hot, 16, {}),
    "a stored chunk damaged": (_damage_store, 12, {"TONIC_HOT_CACHE": "0"}),
}


@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_fault_campaign(tmp_path: Path, kind: str) -> None:
    inject, count, env = KINDS[kind]
    c = Campaign(tmp_path, kind, **env)
    c.edit()
    c.run()
    for i in range(count):
        c.check(inject(c, i))
