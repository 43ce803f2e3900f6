"""The store tests' fixture: an empty store in the test's own folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonic.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")
