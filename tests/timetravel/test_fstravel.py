"""The file tracker's stat cache: unchanged files are not read again, changed ones are."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tonic.store import Store
from tonic.timetravel import fstravel


class Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.puts = 0

    def put(self, data: bytes) -> str:
        self.puts += 1
        key = hashlib.sha256(data).hexdigest()
        self.data[key] = data
        return key

    def get(self, key: str) -> bytes:
        return self.data[key]


def _old(path: Path) -> None:
    """Make a file's stat old enough to be trusted next time (not "racy")."""
    t = path.stat().st_mtime_ns - 10 * fstravel.RACY_NS
    os.utime(path, ns=(t, t))


@pytest.mark.parametrize(
    ("change", "reads"),
    [
        ("nothing", 0),
        ("rewrite-same-size", 1),
        ("append", 1),
        ("chmod", 1),
    ],
)
def test_stat_cache(tmp_path: Path, change: str, reads: int) -> None:
    project, store = tmp_path / "p", Store(tmp_path / "store")
    project.mkdir()
    for name in ("a.txt", "b.txt"):
        (project / name).write_text(f"{name} content\n")
    blobs = Blobs()
    first = fstravel.Tracker(project, blobs.put, blobs.get)
    first.start()
    first.step()
    # Files written in the last seconds are not trusted by the next run ("racy").
    fstravel.save_stats(store, project / "nb.js", first.stats())
    assert fstravel.load_stats(store, project / "nb.js", blobs.data.__contains__) == {}
    for name in ("a.txt", "b.txt"):
        _old(project / name)
    scanned = fstravel.scan(project) or {}
    stats = {rel: (scanned[rel], blob) for rel, (_, blob) in first.stats().items()}
    fstravel.save_stats(store, project / "nb.js", stats)
    known = fstravel.load_stats(store, project / "nb.js", blobs.data.__contains__)
    if change == "rewrite-same-size":
        (project / "a.txt").write_text("A.txt CONTENT\n")
    elif change == "append":
        with open(project / "a.txt", "a") as f:
            f.write("more\n")
    elif change == "chmod":
        os.chmod(project / "a.txt", 0o755)
    blobs.puts = 0
    second = fstravel.Tracker(project, blobs.put, blobs.get)
    second.start(known=known)
    assert blobs.puts == reads
    assert (
        second.stats()["a.txt"][1] == hashlib.sha256((project / "a.txt").read_bytes()).hexdigest()
    )


def test_stats_of_missing_blobs_are_ignored(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "a.txt").write_text("x")
    _old(project / "a.txt")
    st = (fstravel.scan(project) or {})["a.txt"]
    store = Store(tmp_path / "store")
    fstravel.save_stats(store, project / "nb.js", {"a.txt": (st, "0" * 64)})
    assert fstravel.load_stats(store, project / "nb.js", lambda _k: False) == {}
    loaded = fstravel.load_stats(store, project / "nb.js", lambda _k: True)
    assert loaded == {"a.txt": (st, "0" * 64)}
