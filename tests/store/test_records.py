"""Records: other parts' JSON documents in the cache root, each declaring its objects."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.store.trees import sid
from tonic.store import FILES, RUNS, Store


def test_round_trip(store: Store) -> None:
    assert store.get_record(RUNS, "r1") is None
    store.put_record(RUNS, "r1", {"version": 1, "cells": []}, blobs=[sid(2), sid(1), sid(2)])
    assert store.get_record(RUNS, "r1") == {
        "version": 1,
        "cells": [],
        "blobs": sorted({sid(1), sid(2)}),
    }
    # a record is replaced whole; what the caller put in "blobs" is not what counts
    store.put_record(RUNS, "r1", {"version": 2, "blobs": [sid(9)]}, blobs=[])
    assert store.get_record(RUNS, "r1") == {"version": 2, "blobs": []}
    store.put_record(FILES, "abc.stat", {"files": {}}, blobs=[sid(3)])
    assert store.get_record(FILES, "abc.stat") == {"files": {}, "blobs": [sid(3)]}
    assert (store.root / "files" / "abc.stat.json").is_file()


def test_private_and_atomic(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = Store(tmp_path / "store")
        store.put_record(RUNS, "r", {"n": 1}, blobs=[])
        store.put_record(RUNS, "r", {"n": 2}, blobs=[])
    finally:
        os.umask(old)
    folder = store.root / "runs"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in folder.iterdir()] == ["r.json"]
    assert stat.S_IMODE((folder / "r.json").stat().st_mode) == 0o600
    assert list((store.root / "tmp").iterdir()) == []  # staged there, then renamed


def test_readers_do_not_create_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "nothing")
    assert store.get_record(FILES, "x") is None
    assert not (tmp_path / "nothing").exists()


def test_damaged_record_reads_as_none(store: Store) -> None:
    store.put_record(RUNS, "r", {}, blobs=[])
    for text in ("{", "[1, 2]", ""):
        (store.root / "runs" / "r.json").write_text(text)
        assert store.get_record(RUNS, "r") is None


@pytest.mark.parametrize(
    ("kind", "name", "blobs"),
    [
        ("memo", "r", []),  # not a kind of record
        ("../runs", "r", []),
        (RUNS, "../r", []),
        (RUNS, ".hidden", []),
        (RUNS, "", []),
        (RUNS, "r", ["not-an-id"]),
        (RUNS, "r", [sid(1).upper()]),
    ],
)
def test_bad_records(store: Store, kind: str, name: str, blobs: list[str]) -> None:
    with pytest.raises(ValueError):
        store.put_record(kind, name, {}, blobs=blobs)
    assert not store.root.exists() or not any(store.root.rglob("*.json"))


def test_clear_removes_records(store: Store) -> None:
    store.put_record(RUNS, "r", {}, blobs=[])
    store.put_record(FILES, "f", {}, blobs=[])
    store.clear()
    assert store.get_record(RUNS, "r") is None and store.get_record(FILES, "f") is None
