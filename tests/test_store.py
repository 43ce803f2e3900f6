"""The snapshot store: round trips, dedup, privacy, damage, gc, locking, concurrency, and
crash safety against SIGKILL mid-ingest."""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tonic.store import CHUNK, RAW, ZLIB, Store, StoreError, default_root

REPO = Path(__file__).resolve().parent.parent


def sid(n: object) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def write_tree(folder: Path, files: dict[str, bytes], mode: int = 0o600) -> Path:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    return folder


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def image_files(rnd: random.Random, pages: int = 3 << 20) -> dict[str, bytes]:
    """Something like a CRIU image directory: small descriptors and a pages image."""
    files = {f"core-{i}.img": rnd.randbytes(rnd.randint(1, 3000)) for i in range(12)}
    files["inventory.img"] = b"\x01" * 40
    files["pages-1.img"] = rnd.randbytes(pages)
    return files


def objects_on_disk(root: Path) -> set[str]:
    return {p.name for p in (root / "objects").glob("*/*")}


def referenced(root: Path) -> set[str]:
    keys: set[str] = set()
    for manifest in (root / "snapshots").glob("*/manifest.json"):
        doc = json.loads(manifest.read_text())
        for entry in doc["files"].values():
            keys.update(entry["chunks"])
        keys.update(doc["meta"].get("blobs", []))
    return keys


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


# -- location ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TONIC_CACHE": "/x/cache", "XDG_CACHE_HOME": "/y"}, "/x/cache"),
        ({"TONIC_CACHE": "", "XDG_CACHE_HOME": "/y"}, "/y/tonic"),
        ({"XDG_CACHE_HOME": "relative"}, "~/.cache/tonic"),
        ({}, "~/.cache/tonic"),
    ],
)
def test_default_root(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    monkeypatch.delenv("TONIC_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert default_root() == Path(expected).expanduser()
    assert Store().root == Path(expected).expanduser()


def test_readers_do_not_create_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "nothing")
    assert store.snapshots() == []
    assert store.find("t") == []
    assert store.info(sid(1)) is None
    assert store.stats().snapshots == 0
    assert store.remove(sid(1)) is False
    assert store.gc().objects_removed == 0
    with pytest.raises(StoreError, match="no snapshot"):
        store.materialize(sid(1), tmp_path / "out")
    assert not (tmp_path / "nothing").exists()


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        (0, 0),
        (1, 1),
        (4096, 1),
        (CHUNK - 1, 1),
        (CHUNK, 1),
        (CHUNK + 1, 2),
        (3 * CHUNK, 3),
        (5_000_000, -(-5_000_000 // CHUNK)),
    ],
)
@pytest.mark.parametrize("kind", ["random", "zeros"])
def test_round_trip(store: Store, tmp_path: Path, size: int, chunks: int, kind: str) -> None:
    data = random.Random(size).randbytes(size) if kind == "random" else bytes(size)
    src = write_tree(tmp_path / "img", {"pages-1.img": data, "core.img": b"core"}, 0o640)
    info = store.ingest(sid(size), "tag", src, {"cell": 3, "blobs": []})
    assert info.logical_bytes == size + 4
    assert info.files == 2
    store.materialize(sid(size), tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(src)
    for path in (tmp_path / "out").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    manifest = json.loads((store.root / "snapshots" / sid(size) / "manifest.json").read_text())
    assert len(manifest["files"]["pages-1.img"]["chunks"]) == chunks
    assert manifest["meta"] == {"cell": 3, "blobs": []}
    assert manifest["files"]["pages-1.img"]["size"] == size


def test_round_trip_tree(store: Store, tmp_path: Path) -> None:
    rnd = random.Random(7)
    files = image_files(rnd, pages=CHUNK * 40 + 123)
    files["sub/dir/extra.img"] = rnd.randbytes(100_000)
    files["empty.img"] = b""
    src = write_tree(tmp_path / "img", files)
    (src / "link.img").symlink_to(src / "inventory.img")
    os.mkfifo(src / "fifo")
    store.ingest(sid("t"), "tag", src, {})
    out = tmp_path / "out"
    out.mkdir()
    (out / "pages-1.img").write_bytes(b"x" * 10_000_000)  # overwritten, truncated
    store.materialize(sid("t"), out)
    assert read_tree(out) == files
    assert not (out / "link.img").exists() and not (out / "fifo").exists()


@pytest.mark.parametrize("chunk_size", [4096, 16384])
def test_other_chunk_sizes(tmp_path: Path, chunk_size: int) -> None:
    files = image_files(random.Random(chunk_size), pages=10 * chunk_size + 5)
    src = write_tree(tmp_path / "img", files)
    Store(tmp_path / "store", chunk_size=chunk_size).ingest(sid(1), "t", src, {})
    manifest = json.loads((tmp_path / "store/snapshots" / sid(1) / "manifest.json").read_text())
    assert manifest["chunk_size"] == chunk_size
    assert len(manifest["files"]["pages-1.img"]["chunks"]) == 11
    Store(tmp_path / "store").materialize(sid(1), tmp_path / "out")  # the manifest's size
    assert read_tree(tmp_path / "out") == files
    with pytest.raises(ValueError, match="multiple of 512"):
        Store(tmp_path / "store", chunk_size=1000)


def test_compression_header(store: Store, tmp_path: Path) -> None:
    rnd = random.Random(3)
    zeros, noise = bytes(CHUNK), rnd.randbytes(CHUNK)
    assert store.get_blob(store.put_blob(zeros)) == zeros
    assert store.get_blob(store.put_blob(noise)) == noise
    zpath = store.root / "objects" / sid_bytes(zeros)[:2] / sid_bytes(zeros)
    npath = store.root / "objects" / sid_bytes(noise)[:2] / sid_bytes(noise)
    assert zpath.read_bytes()[:1] == ZLIB and zpath.stat().st_size < 1000
    assert npath.read_bytes()[:1] == RAW and npath.stat().st_size == CHUNK + 1


def sid_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_blobs(store: Store) -> None:
    key = store.put_blob(b"hello")
    assert key == sid_bytes(b"hello")
    assert store.put_blob(b"hello") == key
    assert store.get_blob(key) == b"hello"
    assert store.get_blob(store.put_blob(b"")) == b""
    with pytest.raises(StoreError, match="missing"):
        store.get_blob(sid_bytes(b"nope"))
    with pytest.raises(StoreError, match="invalid"):
        store.get_blob("../../etc/passwd")
    path = store.root / "objects" / key[:2] / key
    path.write_bytes(RAW + b"hellO")
    with pytest.raises(StoreError, match="damaged"):
        store.get_blob(key)


# -- dedup ------------------------------------------------------------------------------


def test_dedup(store: Store, tmp_path: Path) -> None:
    rnd = random.Random(11)
    first = image_files(rnd, pages=4 << 20)
    store.ingest(sid(1), "t", write_tree(tmp_path / "a", first), {})
    before = store.stats()
    pages = bytearray(first["pages-1.img"])
    for i in (3, 30, 60):  # change 3 of 64 chunks, one of them by a single byte
        pages[i * CHUNK] ^= 0xFF
    second = dict(first, **{"pages-1.img": bytes(pages), "core-0.img": b"changed"})
    store.ingest(sid(2), "t", write_tree(tmp_path / "b", second), {})
    after = store.stats()
    grew = after.stored_bytes - before.stored_bytes
    manifests = sum(p.stat().st_size for p in (store.root / "snapshots" / sid(2)).iterdir())
    assert after.objects - before.objects == 4
    assert 3 * CHUNK < grew - manifests < 3 * CHUNK + 100
    assert after.logical_bytes == 2 * before.logical_bytes - len(first["core-0.img"]) + 7
    assert store.stored_bytes(sid(2)) >= 4 << 20
    # the same content again under a new id costs one manifest
    store.ingest(sid(3), "t", tmp_path / "b", {})
    assert store.stats().objects == after.objects


# -- privacy ----------------------------------------------------------------------------


def test_permissions(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        root = tmp_path / "store"
        root.mkdir(mode=0o755)
        store = Store(root)
        rnd = random.Random(5)
        src = write_tree(tmp_path / "img", image_files(rnd, pages=CHUNK * 3), 0o600)
        store.ingest(sid(1), "t", src, {})
        store.put_blob(b"secret")
        with store.lock("notebook"):
            pass
        (root / "runs").mkdir(mode=0o700)
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            assert stat.S_IMODE((Path(dirpath) / d).stat().st_mode) == 0o700, d
        for f in filenames:
            assert stat.S_IMODE((Path(dirpath) / f).stat().st_mode) == 0o600, f
            seen += 1
    assert seen > 10


def test_loose_layout_directories_are_tightened(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "objects").mkdir(parents=True)
    os.chmod(root, 0o777)
    os.chmod(root / "objects", 0o755)
    Store(root).put_blob(b"x")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "objects").stat().st_mode) == 0o700


def test_symlinked_root(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(mine)
    Store(tmp_path / "link").put_blob(b"x")
    assert (mine / "objects").is_dir()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make files owned by another user")
@pytest.mark.parametrize("owned", ["symlink", "target", "directory"])
def test_foreign_root_is_refused(tmp_path: Path, owned: str) -> None:
    other = 65534
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    root = target
    if owned != "directory":
        root = tmp_path / "link"
        root.symlink_to(target)
    if owned == "symlink":
        os.lchown(root, other, other)
    else:
        os.chown(target, other, other)
    with pytest.raises(StoreError, match="uid 65534"):
        Store(root).put_blob(b"x")
    with pytest.raises(StoreError, match="uid 65534"):
        Store(root).snapshots()
    assert not (target / "objects").exists()


def test_bad_ids(store: Store, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "img", {"a.img": b"a"})
    for bad in ("", "../x", "a/b", ".hidden", "x" * 200):
        with pytest.raises(StoreError, match="invalid snapshot id"):
            store.ingest(bad, "t", src, {})
        assert store.info(bad) is None
    with pytest.raises(StoreError, match="no image directory"):
        store.ingest(sid(1), "t", tmp_path / "missing", {})


# -- damage, publishing, lookup ---------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "missing", "truncate", "header", "swap"])
def test_damaged_chunk(store: Store, tmp_path: Path, damage: str) -> None:
    rnd = random.Random(13)
    src = write_tree(tmp_path / "img", image_files(rnd, pages=CHUNK * 40))
    store.ingest(sid(1), "t", src, {})
    manifest = json.loads((store.root / "snapshots" / sid(1) / "manifest.json").read_text())
    victim = manifest["files"]["pages-1.img"]["chunks"][17]
    path = store.root / "objects" / victim[:2] / victim
    body = bytearray(path.read_bytes())
    if damage == "flip":
        body[1000] ^= 1
        path.write_bytes(body)
    elif damage == "missing":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(body[:100])
    elif damage == "header":
        path.write_bytes(b"\x07" + body[1:])
    else:
        other = manifest["files"]["pages-1.img"]["chunks"][18]
        path.write_bytes((store.root / "objects" / other[:2] / other).read_bytes())
    with pytest.raises(StoreError, match=f"snapshot {sid(1)} is damaged: chunk {victim}"):
        store.materialize(sid(1), tmp_path / "out")
    assert not path.exists()  # a damaged object is dropped, so it can be stored again
    assert store.remove(sid(1)) is True
    assert store.info(sid(1)) is None and store.find("t") == []
    assert store.remove(sid(1)) is False
    store.gc(blob_grace=0)
    assert objects_on_disk(store.root) == set()
    store.ingest(sid(1), "t", src, {})
    store.materialize(sid(1), tmp_path / "again")
    assert read_tree(tmp_path / "again") == read_tree(src)


def test_publish_twice_first_wins(store: Store, tmp_path: Path) -> None:
    a = write_tree(tmp_path / "a", {"pages-1.img": b"first" * 100_000})
    b = write_tree(tmp_path / "b", {"pages-1.img": b"second" * 100_000})
    first = store.ingest(sid(1), "t", a, {"n": 1})
    again = store.ingest(sid(1), "t", b, {"n": 2})
    assert again == first
    assert store.info(sid(1)) == first
    store.materialize(sid(1), tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(a)
    assert [i.id for i in store.find("t")] == [sid(1)]


def test_find_newest_first(store: Store, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "img", {"a.img": b"a"})
    tags = ["notebook/x:1", "notebook/x:2", "notebook/x:1", "ünïcode", "notebook/x:1"]
    for n, tag in enumerate(tags):
        store.ingest(sid(n), tag, src, {"n": n})
    assert [i.meta["n"] for i in store.find("notebook/x:1")] == [4, 2, 0]
    assert [i.id for i in store.find("notebook/x:2")] == [sid(1)]
    assert [i.tag for i in store.find("ünïcode")] == ["ünïcode"]
    assert store.find("notebook/x:3") == []
    assert [i.meta["n"] for i in store.snapshots()] == [4, 3, 2, 1, 0]
    info = store.info(sid(3))
    assert info is not None and info.tag == "ünïcode" and info.logical_bytes == 1
    assert info.created <= store.info(sid(4)).created  # type: ignore[union-attr]
    store.remove(sid(2))
    assert [i.meta["n"] for i in store.find("notebook/x:1")] == [4, 0]


def test_lock_is_exclusive(store: Store) -> None:
    entered = threading.Event()

    def other() -> None:
        with store.lock("notebook:/a.js"):
            entered.set()

    with store.lock("notebook:/a.js"):
        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.2)
        with store.lock("notebook:/b.js"):  # another name does not wait
            pass
    thread.join(5)
    assert entered.is_set()


# -- gc ---------------------------------------------------------------------------------


def test_gc_keeps_referenced(store: Store, tmp_path: Path) -> None:
    rnd = random.Random(17)
    shared = rnd.randbytes(CHUNK * 8)
    a = write_tree(tmp_path / "a", {"pages-1.img": shared + rnd.randbytes(CHUNK * 2)})
    b = write_tree(tmp_path / "b", {"pages-1.img": shared + rnd.randbytes(CHUNK * 3)})
    kept_blob = store.put_blob(b"notebook source v1")
    loose_blob = store.put_blob(b"nobody refers to this")
    run_blob = store.put_blob(b"a file a finished run wrote")
    (store.root / "runs").mkdir()
    (store.root / "runs" / "r.json").write_text(json.dumps({"blobs": [run_blob]}))
    store.ingest(sid("a"), "t", a, {"blobs": [kept_blob]})
    store.ingest(sid("b"), "t", b, {"blobs": []})
    (store.root / "tmp" / "ingest-obj-1-1-x").write_bytes(b"leftover")

    # fresh blobs survive the default grace; nothing referenced goes
    report = store.gc()
    assert report.snapshots_removed == 0 and report.objects_removed == 0
    assert report.tmp_removed == 1
    assert store.get_blob(loose_blob)

    report = store.gc(keep=lambda info: info.id == sid("a"), blob_grace=0)
    assert report.snapshots_removed == 1 and report.removed_ids == [sid("b")]
    assert report.objects_removed == 3 + 1  # b's own chunks and the loose blob
    assert report.bytes_freed >= 3 * CHUNK
    assert str(report).startswith("removed 1 snapshot and 4 objects")
    assert objects_on_disk(store.root) == referenced(store.root) | {run_blob}
    assert store.get_blob(kept_blob) == b"notebook source v1"
    assert store.get_blob(run_blob)
    with pytest.raises(StoreError):
        store.get_blob(loose_blob)
    store.materialize(sid("a"), tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(a)
    assert [i.id for i in store.find("t")] == [sid("a")]


def test_gc_max_bytes_removes_oldest(store: Store, tmp_path: Path) -> None:
    rnd = random.Random(19)
    for n in range(4):
        src = write_tree(tmp_path / str(n), {"pages-1.img": rnd.randbytes(1 << 20)})
        store.ingest(sid(n), "t", src, {"n": n})
    total = store.stats().stored_bytes
    limit = total - (1 << 20) - 10_000  # more than one snapshot's worth
    report = store.gc(max_bytes=limit, blob_grace=0)
    assert report.removed_ids == [sid(0), sid(1)]
    assert [i.meta["n"] for i in store.snapshots()] == [3, 2]
    assert store.stats().stored_bytes <= limit
    assert store.gc(max_bytes=0, blob_grace=0).snapshots_removed == 2
    assert store.stats() == type(store.stats())(0, 0, 0, 0)


def test_gc_cleans_staging_and_links(store: Store, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "img", {"a.img": b"a"})
    store.ingest(sid(1), "t", src, {})
    store.ingest(sid(2), "u", src, {})
    tmp = store.root / "tmp"
    (tmp / "ingest-snap-9-1-x").mkdir()
    (tmp / "ingest-snap-9-1-x" / "manifest.json").write_text("{")
    for name in ("old-dump", "fresh-dump"):
        (tmp / name).mkdir()
        (tmp / name / "pages-1.img").write_bytes(b"p")
    two_hours_ago = time.time() - 7200
    os.utime(tmp / "old-dump", (two_hours_ago, two_hours_ago))
    # a dangling link, a missing link, a damaged snapshot
    index = store.root / "index"
    (next(index.iterdir()) / sid(9)).touch()
    for link in index.glob(f"*/{sid(2)}"):
        link.unlink()
    (store.root / "snapshots" / sid(3)).mkdir()
    (store.root / "snapshots" / sid(3) / "manifest.json").write_text("not json")
    report = store.gc()
    assert sorted(p.name for p in tmp.iterdir()) == ["fresh-dump"]
    assert report.tmp_removed == 2
    assert report.links_removed == 1 and report.damaged_removed == 1
    assert [i.id for i in store.find("u")] == [sid(2)]
    assert {i.id for i in store.snapshots()} == {sid(1), sid(2)}


def test_clear(store: Store, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "img", {"a.img": b"a" * 100_000})
    store.ingest(sid(1), "t", src, {})
    (store.root / "runs").mkdir()
    (store.root / "unrelated.txt").write_text("mine")
    store.clear()
    assert sorted(p.name for p in store.root.iterdir()) == ["locks", "unrelated.txt"]
    assert store.snapshots() == [] and store.find("t") == []
    store.ingest(sid(1), "t", src, {})  # the same Store still works
    store.materialize(sid(1), tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(src)


# -- concurrency and crashes ------------------------------------------------------------


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
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
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
