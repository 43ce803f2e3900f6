"""Every test run gets its own private snapshot cache."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache() -> Iterator[None]:
    if os.environ.get("TONIC_TEST_KEEP_CACHE"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tonic-test-cache-") as root:
        os.environ["TONIC_CACHE"] = root
        yield
