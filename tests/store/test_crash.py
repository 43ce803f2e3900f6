"""Concurrency and crashes: ingests racing gc, and SIGKILL mid-ingest."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT
from tests.store.trees import image_files, objects_on_disk, read_tree, referenced, sid, write_tree
from tonic.store import CHUNK, Store


def _ingest_many(root: str, worker: int, seed: int, rounds: int) -> None:
    store = Store(Path(root))
    rnd = random.Random(seed)
    shared = random.Random(0).randbytes(CHUNK * 24)
    for n in range(rounds):
        for doomed in (False, True):
            folder = Path(root).parent / f"src-{worker}-{n}-{doomed}"
            pages = shared + rnd.randbytes(CHUNK * 4 + 17)
            write_tree(folder, {"pages-1.img": pages, "core.img": rnd.randbytes(200)})
            blob = store.put_blob(f"source {worker} {n} {doomed}".encode())
            meta = {"blobs": [blob], "doomed": doomed}
            store.ingest(sid((worker, n, doomed)), f"w{worker}", folder, meta)


def _gc_many(root: str, rounds: int) -> None:
    store = Store(Path(root))
    for _ in range(rounds):
        # removes the doomed snapshots while others that share their chunks are stored
        store.gc(keep=lambda info: not info.meta["doomed"])


def test_concurrent_ingest_and_gc(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_ingest_many, args=(str(root), w, w, 6)) for w in (1, 2)]
    procs.append(ctx.Process(target=_gc_many, args=(str(root), 20)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(root)
    for worker in (1, 2):
        infos = [i for i in store.find(f"w{worker}") if not i.meta["doomed"]]
        assert [i.id for i in infos] == [sid((worker, n, False)) for n in reversed(range(6))]
    for info in store.snapshots():
        worker, n, doomed = next(
            k for k in itertools.product((1, 2), range(6), (False, True)) if sid(k) == info.id
        )
        out = tmp_path / "out" / info.id
        store.materialize(info.id, out)
        assert read_tree(out) == read_tree(tmp_path / f"src-{worker}-{n}-{doomed}")
        blob = info.meta["blobs"][0]  # type: ignore[index]
        assert store.get_blob(blob) == f"source {worker} {n} {doomed}".encode()
    store.gc(blob_grace=0)
    assert objects_on_disk(root) == referenced(root)


CHILD = """
import sys
from pathlib import Path
from tonic.store import Store
store = Store(Path(sys.argv[1]))
print("ready", flush=True)
store.ingest(sys.argv[2], "crash", Path(sys.argv[3]), {"blobs": []})
print("done", flush=True)
"""


def _ingest_child(root: Path, snapshot_id: str, src: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), snapshot_id, str(src)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_sigkill_mid_ingest(tmp_path: Path) -> None:
    root = tmp_path / "store"
    rnd = random.Random(23)

    def image(n: int) -> Path:
        files = image_files(rnd, pages=6 << 20)
        files["pages-2.img"] = rnd.randbytes(64) * (4 << 14)  # 4 MiB, compressible
        files.update({f"fd-{i}.img": rnd.randbytes(100) for i in range(60)})
        return write_tree(tmp_path / f"src-{n}", files)

    # how long an undisturbed ingest takes
    src = image(0)
    started = time.monotonic()
    with _ingest_child(root, sid(0), src) as proc:
        assert proc.wait(30) == 0
    full = time.monotonic() - started
    sources = {sid(0): src}

    store = Store(root)
    outcomes = []
    fractions = [0.0, 0.1, 0.25, 0.4, 0.55, 0.7, 0.95]  # of an undisturbed run, jittered
    for n, fraction in enumerate(fractions, start=1):
        src = image(n)
        sources[sid(n)] = src
        proc = _ingest_child(root, sid(n), src)
        time.sleep(fraction * full * rnd.uniform(0.8, 1.2))
        os.kill(proc.pid, signal.SIGKILL)
        with proc:
            code = proc.wait(30)
        info = store.info(sid(n))
        outcomes.append((code, info is not None))
        if info is not None:  # whole, or not there at all
            assert info.logical_bytes == sum(len(d) for d in read_tree(src).values())
            out = tmp_path / "out" / info.id
            store.materialize(info.id, out)
            assert read_tree(out) == read_tree(src)
        published = {sid(k) for k in range(n + 1) if store.info(sid(k)) is not None}
        assert {i.id for i in store.find("crash")} == published
    assert any(code == -signal.SIGKILL for code, _ in outcomes), outcomes

    leftovers = [p for p in (root / "tmp").iterdir() if p.name.startswith("ingest-")]
    report = store.gc(blob_grace=0)
    assert report.tmp_removed == len(leftovers)
    assert [p.name for p in (root / "tmp").iterdir()] == []
    assert objects_on_disk(root) == referenced(root)
    for info in store.snapshots():
        out = tmp_path / "final" / info.id
        store.materialize(info.id, out)
        assert read_tree(out) == read_tree(sources[info.id])
    # a killed ingest can simply be repeated
    for n in range(1, 8):
        if store.info(sid(n)) is None:
            store.ingest(sid(n), "crash", sources[sid(n)], {"blobs": []})
    assert len(store.find("crash")) == 8
