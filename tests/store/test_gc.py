"""gc and clear: what is kept, what goes, staging and tag links."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from tests.store.trees import objects_on_disk, read_tree, referenced, sid, write_tree
from tonic.store import CHUNK, RUNS, Store, StoreError
from tonic.timetravel import fstravel


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


def test_gc_keeps_exactly_what_records_declare(store: Store, tmp_path: Path) -> None:
    """Each record declares its objects in "blobs"; an id only another field of a record
    mentions does not keep its object."""
    blob = {name: store.put_blob(name.encode()) for name in "ABCDEFG"}
    project = tmp_path / "p"
    project.mkdir()
    (project / "a.txt").write_text("a")
    notebook = project / "nb.js"
    # a run record as timetravel/records.py writes it: its files' blobs declared
    run = {"version": 1, "files": {"a.txt": [blob["A"], blob["B"]]}, "modules": {}}
    store.put_record(RUNS, "f" * 64, run, blobs=[blob["A"], blob["B"]])
    # the files records the file tracker writes (they declare their blobs themselves)
    a = str(project / "a.txt")
    fstravel.save_last(store, notebook, {a: [blob["D"], blob["C"]]}, [a])
    # ids in fields a record does not declare
    undeclared = {"files": {"a.txt": [blob["E"], None]}, "value": blob["F"]}
    store.put_record(RUNS, "e" * 64, undeclared, blobs=[])
    (store.root / "files" / "handmade.json").write_text(
        json.dumps({"files": {"b.txt": [None, blob["G"]]}, "blobs": []})
    )

    report = store.gc(blob_grace=0)
    assert report.objects_removed == 3
    for name in "ABCD":
        assert store.get_blob(blob[name]) == name.encode()
    for name in "EFG":
        assert not store.has_blob(blob[name]), name
    assert fstravel.load_last(store, notebook) == {a: [blob["D"], blob["C"]]}


def test_gc_ignores_hex_outside_blobs_of_a_raw_record(store: Store) -> None:
    """A record written by hand (not through put_record): still only "blobs" counts."""
    kept, mentioned = store.put_blob(b"declared"), store.put_blob(b"only mentioned")
    (store.root / "runs").mkdir()
    doc = {"blobs": [kept], "files": {"x.txt": [None, mentioned]}, "note": mentioned}
    (store.root / "runs" / "r.json").write_text(json.dumps(doc))
    assert store.gc(blob_grace=0).objects_removed == 1
    assert store.has_blob(kept) and not store.has_blob(mentioned)


def test_gc_keeps_what_a_record_of_an_older_tonic_names(store: Store) -> None:
    """A files record written before records declared their objects (no "blobs" field,
    as tonic wrote them until the store became a package): every object it names stays,
    as that tonic's gc kept them; a fresh run's rollback needs the "before" content."""
    before, after = store.put_blob(b"before the run"), store.put_blob(b"after the run")
    stray = store.put_blob(b"named by no record")
    (store.root / "files").mkdir()
    doc = {"notebook": "/p/nb.js", "files": {"log.txt": [before, after]}}
    (store.root / "files" / ("0" * 32 + ".json")).write_text(json.dumps(doc))
    assert store.gc(blob_grace=0).objects_removed == 1
    assert store.has_blob(before) and store.has_blob(after) and not store.has_blob(stray)
