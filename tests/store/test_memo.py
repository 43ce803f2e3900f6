"""Memos: private, keyed by their stamp, optionally aged out."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from tonic.store import private_file, recall, remember


def test_memos(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TONIC_CACHE", str(tmp_path / "cache"))
    assert recall("probe", "v1") is None
    remember("probe", "v1", "answer")
    assert recall("probe", "v1") == "answer"
    assert recall("probe", "v2") is None  # what it depends on changed
    path = private_file("probe")
    assert path == tmp_path / "cache" / "memo" / "probe"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    old = time.time() - 100
    os.utime(path, (old, old))
    assert recall("probe", "v1", max_age=10) is None
    assert recall("probe", "v1", max_age=1000) == "answer"
    remember("probe", "v2", "other")  # one memo a name
    assert recall("probe", "v1") is None and recall("probe", "v2") == "other"
