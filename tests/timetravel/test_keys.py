"""Snapshot keys hash the code that decides what a snapshot's process runs."""

from __future__ import annotations

from tests.helpers import ROOT
from tonic.timetravel import keys


def test_keys_hash_every_module_of_continuation() -> None:
    """A change of how a continued process's suffix is judged or built makes other keys:
    every module of the continuation package is hashed."""
    package = ROOT / "tonic" / "timetravel" / "continuation"
    found = sorted(f"timetravel/continuation/{p.name}" for p in package.glob("*.py"))
    assert found == sorted(keys.CONTINUATION)
