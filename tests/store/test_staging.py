"""Staging entries carry their owner (a pid and its start time): a gone owner's go at
once, at the next run (Store.sweep) and at a gc; a live owner's stay; a name of another
form is left to gc's age rule. And a real ingest worker killed mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import gone
from tonic.store import Store
from tonic.store.ingest import Worker, settled
from tonic.store.layout import Owner, me, owner_of, staging_name, start_time


@pytest.fixture
def exited() -> Owner:
    """A process that has ended (and been reaped)."""
    proc = subprocess.Popen(["sleep", "30"])
    owner = Owner.of(proc.pid)
    proc.kill()
    proc.wait()
    assert owner is not None
    return owner


@pytest.fixture
def zombie() -> Iterator[Owner]:
    """A process that has ended but is not reaped yet."""
    proc = subprocess.Popen(["sleep", "30"])
    owner = Owner.of(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    assert gone(proc.pid)
    assert owner is not None and Path(f"/proc/{proc.pid}").exists()
    yield owner
    proc.wait()


def test_owner_names_round_trip() -> None:
    mine = me()
    assert mine.pid == os.getpid() and mine.alive()
    assert start_time(os.getpid()) == mine.start
    for kind in ("dump", "restore", "ingest-obj"):
        name = mine.name(kind, "7")
        assert name.startswith(f"{kind}.{os.getpid()}.{mine.start}.7-")
        assert owner_of(name) == mine
    for other in ("tonic-dump-abc", "ingest-obj-12-3-abcd", "dump.12.x.ab", "Dump.1.2.ab"):
        assert owner_of(other) is None


def _entry(tmp: Path, name: str, age: float = 0.0) -> str:
    (tmp / name).mkdir(parents=True)
    (tmp / name / "pages-1.img").write_bytes(b"p" * 4096)
    if age:
        then = time.time() - age
        os.utime(tmp / name, (then, then))
    return name


# who owns the entry -> (kept by a run's sweep, kept by gc)
OWNERS: list[tuple[str, Callable[[Owner, Owner], str], bool, bool]] = [
    ("this process", lambda _x, _z: me().name("dump"), True, True),
    ("this process, its own kind", lambda _x, _z: me().name("ingest-obj", "1"), True, True),
    ("an ended process", lambda x, _z: x.name("dump"), False, False),
    ("an ended ingest", lambda x, _z: x.name("ingest-snap", "1"), False, False),
    ("a zombie", lambda _x, z: z.name("dump"), False, False),
    ("a reused pid", lambda _x, _z: Owner(os.getpid(), me().start + 1).name("dump"), False, False),
    ("no such pid", lambda _x, _z: Owner(2**22 + 1, 5).name("restore"), False, False),
    ("an older tonic's own", lambda _x, _z: "ingest-obj-12-3-abcd", True, False),
    ("a foreign young entry", lambda _x, _z: "tonic-dump-young", True, True),
]


@pytest.mark.parametrize(
    ("who", "name", "run_keeps", "gc_keeps"), OWNERS, ids=[row[0] for row in OWNERS]
)
def test_sweep_by_owner(
    store: Store,
    exited: Owner,
    zombie: Owner,
    who: str,
    name: Callable[[Owner, Owner], str],
    run_keeps: bool,
    gc_keeps: bool,
) -> None:
    tmp = store.root / "tmp"
    entry = _entry(tmp, name(exited, zombie))
    old = _entry(tmp, "tonic-dump-old", age=7200)  # gc's age rule, never a run's
    assert store.sweep() == (0 if run_keeps else 1), who
    assert sorted(p.name for p in tmp.iterdir()) == sorted({old, entry} if run_keeps else {old})
    if run_keeps:
        report = store.gc()
        assert report.tmp_removed == (1 if gc_keeps else 2)
        assert [p.name for p in tmp.iterdir()] == ([entry] if gc_keeps else [])


def test_store_entries_are_named_for_their_process(store: Store) -> None:
    staged = store._root.tmp_name(store._root.ensure(), "obj")
    assert owner_of(staged.name) == me()
    assert staging_name(store.root, "restore").parent == store.root / "tmp"
    assert owner_of(staging_name(store.root, "restore").name) == me()


def test_a_killed_ingest_workers_dump_goes_at_the_next_sweep(tmp_path: Path) -> None:
    """A worker started the way a run starts it, killed with -9 while it stores a dump:
    its dump (and its half-stored entries) stay in tmp/ until the next run sweeps them;
    the store holds no half-written snapshot."""
    store = Store(tmp_path / "cache")
    tmp = store.root / "tmp"
    store._root.ensure()
    worker = Worker(store.root, tmp_path / "nb.js")
    folder = worker.folder()
    assert worker.proc is not None and worker.owner is not None
    assert owner_of(folder.name) == worker.owner
    folder.mkdir(mode=0o700)
    (folder / "pages-1.img").write_bytes(os.urandom(64 << 20))  # slow to hash and pack
    worker.submit("a" * 64, "tag", folder, {})
    deadline = time.monotonic() + 30
    while not any((store.root / "objects").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.005)  # until it has begun storing the dump
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    assert store.snapshots() == []
    left = [p.name for p in tmp.iterdir()]
    assert folder.name in left  # what a kill -9 leaves
    assert all(owner_of(n) == worker.owner for n in left)
    assert store.sweep() == len(left)
    assert list(tmp.iterdir()) == []
    with settled(store.root):  # the killed worker's lock is free
        pass


def test_a_live_workers_dump_stays(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    store._root.ensure()
    worker = Worker(store.root, tmp_path / "nb.js")
    folder = worker.folder()
    folder.mkdir(mode=0o700)
    (folder / "pages-1.img").write_bytes(b"x" * 4096)
    try:
        assert store.sweep() == 0
        assert store.gc().tmp_removed == 0
        assert folder.is_dir()
    finally:
        worker.release()
        assert worker.proc is not None
        worker.proc.wait(10)
    assert store.sweep() == 1 and not folder.exists()
