"""Objects: the compression header, blobs and their damage."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.store.trees import sid_bytes
from tonic.store import CHUNK, RAW, ZLIB, Store, StoreError


def test_compression_header(store: Store, tmp_path: Path) -> None:
    rnd = random.Random(3)
    zeros, noise = bytes(CHUNK), rnd.randbytes(CHUNK)
    assert store.get_blob(store.put_blob(zeros)) == zeros
    assert store.get_blob(store.put_blob(noise)) == noise
    zpath = store.root / "objects" / sid_bytes(zeros)[:2] / sid_bytes(zeros)
    npath = store.root / "objects" / sid_bytes(noise)[:2] / sid_bytes(noise)
    assert zpath.read_bytes()[:1] == ZLIB and zpath.stat().st_size < 1000
    assert npath.read_bytes()[:1] == RAW and npath.stat().st_size == CHUNK + 1


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
