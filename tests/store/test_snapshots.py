"""Snapshots: round trips, dedup, bad ids, damage, publishing and lookup."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import pytest

from tests.store.trees import image_files, objects_on_disk, read_tree, sid, write_tree
from tonic.store import CHUNK, Store, StoreError

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
