"""Landed snapshots: a dump named for the next run before the worker has stored it; a
restore holds it, the worker takes it away after, a gone worker's are no snapshots."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from tonic.store import landing
from tonic.store.layout import TMP, Owner, me, staging_name

ID = "a" * 64


def _dump(root: Path, owner: Owner | None = None) -> Path:
    images = staging_name(root, "dump", owner)
    images.mkdir(parents=True)
    (images / "pages-1.img").write_bytes(b"p" * 100)
    (images / "core.img").write_bytes(b"c" * 10)
    return images


def test_a_landed_dump_is_found_by_its_tag_and_used_as_it_is(tmp_path: Path) -> None:
    images = _dump(tmp_path)
    landing.land(images, ID, "tag-1", {"cells": []})
    (found,) = landing.landed(tmp_path)["tag-1"]
    assert (found.id, found.meta, found.logical_bytes, found.files) == (ID, {"cells": []}, 110, 2)
    assert list(landing.landed(tmp_path)) == ["tag-1"]
    with landing.using(tmp_path, ID) as folder:
        assert folder == images
    with landing.using(tmp_path, "b" * 64) as folder:
        assert folder is None


def test_the_worker_lifts_it_once_no_restore_reads_it(tmp_path: Path) -> None:
    images = _dump(tmp_path)
    landing.land(images, ID, "tag", {})
    lifted = threading.Event()

    def lift() -> None:
        landing.lift(images)
        lifted.set()

    with landing.using(tmp_path, ID) as folder:
        assert folder == images
        worker = threading.Thread(target=lift)
        worker.start()
        time.sleep(0.2)
        assert not lifted.is_set(), "the worker took the dump while a restore read it"
    worker.join(5)
    assert lifted.is_set()
    assert landing.landed(tmp_path) == {}
    with landing.using(tmp_path, ID) as folder:
        assert folder is None


def test_a_gone_workers_dump_is_no_snapshot(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    owner = Owner.of(proc.pid)
    proc.kill()
    proc.wait()
    images = _dump(tmp_path, owner)
    landing.land(images, ID, "tag", {})
    assert landing.landed(tmp_path) == {}


def test_what_cannot_be_read_is_no_snapshot(tmp_path: Path) -> None:
    images = _dump(tmp_path)
    landing.land(images, ID, "tag", {})
    record = landing.record_path(images)
    assert record is not None and record.exists()
    record.write_bytes(b'{"id": "' + ID.encode() + b'", "tag": "ta')  # cut short
    assert landing.landed(tmp_path) == {}
    (tmp_path / TMP / me().name("landed")).write_bytes(b"{}")  # no dump beside it
    assert landing.landed(tmp_path) == {}


def test_only_a_workers_dump_folder_is_landed(tmp_path: Path) -> None:
    other = tmp_path / TMP / "elsewhere"
    other.mkdir(parents=True)
    landing.land(other, ID, "tag", {})
    assert landing.record_path(other) is None
    assert list((tmp_path / TMP).iterdir()) == [other]
