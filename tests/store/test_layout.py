"""The cache root: where it is, that readers create nothing, privacy (0700/0600, loose
modes, symlinks, foreign owners), and locks."""

from __future__ import annotations

import os
import random
import stat
import threading
from pathlib import Path

import pytest

from tests.store.trees import image_files, sid, write_tree
from tonic.store import CHUNK, Store, StoreError, default_root

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
