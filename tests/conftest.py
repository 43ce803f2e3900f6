"""Every test run gets its own private snapshot cache."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# The tests' notebooks have cells of a few milliseconds: snapshot after every one of them
# (by default tonic skips snapshots after cells shorter than 50 ms; one test covers that).
os.environ.setdefault("TONIC_SNAPSHOT_MIN_MS", "0")


@pytest.fixture(autouse=True, scope="session")
def _private_cache() -> Iterator[None]:
    if os.environ.get("TONIC_TEST_KEEP_CACHE"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tonic-test-cache-") as root:
        os.environ["TONIC_CACHE"] = root
        yield
        from pathlib import Path

        from tonic.ingest import settled

        with settled(Path(root)):  # detached ingest workers finish before the cleanup
            pass
        from tonic.engines.docker import collect_garbage

        # The docker engine's containers and images of this session's cache.
        collect_garbage(Path(root), set(), everything=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.test_timetravel import EDITS_RUN

    for engine in ("criu", "docker"):
        counts = {k.split(":", 1)[1]: n for k, n in EDITS_RUN.items() if k.startswith(engine)}
        if counts:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
            terminalreporter.write_line(
                f"edit-sequence differential test, {engine} engine: {sum(counts.values())} "
                f"edits, each resumed `tonic run --plain` equal to a fresh `node FILE` ({kinds})"
            )
