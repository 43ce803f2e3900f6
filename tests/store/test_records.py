"""Records: other parts' JSON documents in the cache root, each declaring its objects."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.store.trees import sid
from tonic.store import FILES, RUNS, DamagedRecord, Store, seal, unseal


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


# what is on disk instead of the record put() wrote (None: the record as written)
@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda t: t[: len(t) // 2], "it is not whole JSON"),  # cut short
        (lambda t: "", "it is not whole JSON"),
        (lambda t: "{", "it is not whole JSON"),
        (lambda t: t[:-1] + "\udcff", "it is not whole JSON"),  # not UTF-8
        (lambda t: "[1, 2]", "it is not a JSON object"),
        (lambda t: "[" * 100000 + "]" * 100000, "it is not whole JSON"),  # too deep
        (lambda t: t.replace('"n": 1', '"n": 2'), "its checksum does not match"),
        (lambda t: json.dumps({"n": 1, "blobs": []}), "it has no checksum"),  # an older tonic's
        (lambda t: t.replace('"blake2b": "', '"blake2b": "0'), "its checksum does not match"),
    ],
)
def test_damaged_record(store: Store, edit: Callable[[str], str], why: str) -> None:
    """A record cut short, edited, or unsealed reads as DamagedRecord (its reader
    ignores it), never as a record nor a traceback."""
    store.put_record(RUNS, "r", {"n": 1}, blobs=[])
    path = store.root / "runs" / "r.json"
    assert store.get_record(RUNS, "r") == {"n": 1, "blobs": []}
    path.write_bytes(edit(path.read_text()).encode("utf-8", "surrogateescape"))
    with pytest.raises(DamagedRecord) as err:
        store.get_record(RUNS, "r")
    assert str(err.value) == why


def test_a_record_is_sealed_canonically() -> None:
    """The checksum is of the canonical JSON: key order and spacing do not matter."""
    doc = seal({"b": [1, 2.5, None], "a": {"y": "é", "x": True}})
    assert unseal(json.loads(json.dumps(doc, indent=3))) == {
        "b": [1, 2.5, None],
        "a": {"y": "é", "x": True},
    }


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
