"""A store on a full disk (a small tmpfs): every write fails as a full disk (Store.filled)
and leaves nothing half-written: no staging entry, no dangling tag link, no hot folder
without its size, no half memo; what was there before stays whole."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import fill_disk, mount_tmpfs, unmount
from tests.store.trees import write_tree
from tonic.store import RUNS, Store, hot, is_full_error, memo
from tonic.store.layout import disk_full


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    point = tmp_path / "disk"
    mount_tmpfs(point, "4m")
    yield point
    unmount(point)


def _nothing_staged(store: Store) -> None:
    assert list((store.root / "tmp").iterdir()) == []
    assert list((store.root / "index").glob("*/*")) == []


def test_disk_full(disk: Path) -> None:
    assert not disk_full(disk / "not" / "yet")
    fill_disk(disk)
    assert disk_full(disk) and disk_full(disk / "not" / "yet")


def test_an_ingest_bigger_than_the_disk(disk: Path, tmp_path: Path) -> None:
    store = Store(disk / "store")
    src = write_tree(tmp_path / "img", {"pages-1.img": os.urandom(8 << 20)})
    with pytest.raises(Exception) as caught:
        store.ingest("a" * 64, "tag", src, {})
    assert is_full_error(caught.value), caught.value
    assert store.filled and store.snapshots() == [] and store.find("tag") == []
    _nothing_staged(store)
    store.gc()  # its chunks (mtime 0) go: room for a snapshot that fits
    small = write_tree(tmp_path / "small", {"pages-1.img": os.urandom(1 << 20)})
    assert store.ingest("b" * 64, "tag", small, {}).id == "b" * 64
    assert [i.id for i in store.find("tag")] == ["b" * 64]


def test_blobs_and_records_on_a_full_disk(disk: Path) -> None:
    store = Store(disk / "store")
    blob = store.put_blob(b"before")
    store.put_record(RUNS, "r", {"n": 1}, blobs=[blob])
    fill_disk(disk)
    assert Store(disk / "store").full()
    for write in (
        lambda: store.put_blob(os.urandom(1 << 16)),
        lambda: store.put_record(RUNS, "r", {"n": 2, "pad": "x" * 65536}, blobs=[blob]),
    ):
        with pytest.raises(OSError) as caught:
            write()
        assert is_full_error(caught.value)
    assert store.filled
    assert store.get_record(RUNS, "r") == {"n": 1, "blobs": [blob]}  # the last whole one
    assert store.get_blob(blob) == b"before"
    _nothing_staged(store)


def test_hot_images_on_a_full_disk(disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONIC_CACHE", str(disk / "store"))
    store = Store(disk / "store")
    store.put_blob(b"x")  # the layout
    images = write_tree(disk / "store" / "tmp" / "dump.1.2.ab", {"pages-1.img": b"p" * 4096})
    fill_disk(disk)
    snapshot_id = "c" * 64
    hot.keep(disk / "store", snapshot_id, images)
    assert not images.exists()
    assert hot.kept(disk / "store", snapshot_id) is None
    left = list((disk / "store" / "hot").iterdir()) if (disk / "store" / "hot").exists() else []
    assert left == []


def test_a_memo_on_a_full_disk(disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONIC_CACHE", str(disk / "store"))
    memo.remember("probe", "v1", "old")
    fill_disk(disk)
    memo.remember("probe", "v2", "x" * 65536)  # best effort: not kept
    assert memo.recall("probe", "v1") == "old"
    assert json.loads((disk / "store" / "memo" / "probe").read_text()) == {"v1": "old"}
    assert list((disk / "store" / "tmp").iterdir()) == []
