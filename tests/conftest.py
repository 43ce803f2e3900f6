"""Every test run gets its own private snapshot cache."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The tests' notebooks have cells of a few milliseconds: snapshot after every one of them
# (by default tonic skips snapshots after cells shorter than 50 ms; one test covers that).
os.environ.setdefault("TONIC_SNAPSHOT_MIN_MS", "0")
# Every command runs in a process of its own, as without a warm server; tests/test_server.py
# turns the server on. Servers (if any) keep their sockets in a folder of this session's.
os.environ["TONIC_SERVER"] = "off"
_RUNTIME = tempfile.mkdtemp(prefix="tonic-test-run-")
os.environ["TONIC_RUNTIME_DIR"] = _RUNTIME


@pytest.fixture(autouse=True, scope="session")
def _private_cache() -> Iterator[None]:
    if os.environ.get("TONIC_TEST_KEEP_CACHE"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tonic-test-cache-") as root:
        os.environ["TONIC_CACHE"] = root
        yield
        from tests.helpers import ingest_workers
        from tonic.store.ingest import settled

        # Detached ingest workers would store on into a cache about to go: ended (by
        # pid) rather than awaited (up to 40 s of a session's end, measured).
        for pid in ingest_workers(Path(root)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with settled(Path(root)):  # (their locks go with them)
            pass
        from tonic.engines.docker.gc import collect_garbage

        # The docker engine's containers and images of this session's cache.
        collect_garbage(Path(root), set(), everything=True)


@pytest.fixture(autouse=True, scope="session")
def _no_servers_left() -> Iterator[None]:
    """Whatever tonic servers the tests started are stopped (by pid) at the end."""
    yield
    import shutil
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "tonic", "server", "stop"], capture_output=True, check=False
    )
    shutil.rmtree(_RUNTIME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_criu_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No CRIU of this session's caches and folders outlives the test that started it
    (those left are ended by pid, and the test fails). A tonic killed mid-dump leaves
    CRIU's forked helper to its watchdog, which ends it a moment later: it gets 5 s."""
    yield
    import time

    from tests.helpers import criu_left, described_process

    roots = [tmp_path_factory.getbasetemp(), os.environ.get("TONIC_CACHE", _RUNTIME)]
    left = criu_left(*map(Path, roots))
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = criu_left(*map(Path, roots))
    described = [described_process(pid) or f"{pid}: gone" for pid in left]
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "a CRIU still runs after the test:\n" + "\n".join(described)


# The longest tests (half a minute to a minute each) first: started last, one of them
# would keep one worker of pytest-xdist busy while the other has nothing left to do.
LONGEST_FIRST = (
    "test_observed_edits.py::",
    "test_edits.py::test_es_module_edit_sequence",
    "test_fault_campaign.py::",
    "test_edits.py::test_edit_sequence",
    "test_edits.py::test_kill_9_during_checkpoints",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        found = (n for n, name in enumerate(LONGEST_FIRST) if name in item.nodeid)
        return next(found, len(LONGEST_FIRST))

    items.sort(key=rank)  # (stable: the others keep their order)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker of pytest-xdist (`-n`) hands its counts to the controller, which prints."""
    from tests.helpers import FAULTS
    from tests.timetravel.test_edits import EDITS_RUN

    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["tonic_counts"] = {"faults": dict(FAULTS), "edits": dict(EDITS_RUN)}
    else:  # the controller of workers, which ran no fixture (or a plain session again)
        import shutil

        shutil.rmtree(_RUNTIME, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    from tests.helpers import FAULTS
    from tests.timetravel.test_edits import EDITS_RUN

    counts = getattr(node, "workeroutput", {}).get("tonic_counts")
    if counts:
        FAULTS.update(counts["faults"])
        EDITS_RUN.update(counts["edits"])


# Passed conformance runs by engine (the controller sees every worker's reports).
CONFORMED: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "::test_plain_equals_node[" in report.nodeid:
        case = report.nodeid.split("[", 1)[1]
        engine = "criu-served" if case.startswith("criu-served-") else case.split("-", 1)[0]
        CONFORMED[engine] = CONFORMED.get(engine, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.helpers import FAULTS, node_version
    from tests.timetravel.test_edits import EDITS_RUN

    under = f"node {node_version()}"
    if CONFORMED:
        engines = ", ".join(f"{k} {n}" for k, n in sorted(CONFORMED.items()))
        terminalreporter.write_line(
            f"conformance corpus under {under}: {sum(CONFORMED.values())} runs, each equal "
            f"to that node's own `node FILE` ({engines})"
        )

    if FAULTS:
        kinds = ", ".join(f"{k} {n}" for k, n in FAULTS.items())
        terminalreporter.write_line(
            f"fault injection: {sum(FAULTS.values())} faults of {len(FAULTS)} kinds, each "
            f"followed by a run equal to a fresh `node FILE` ({kinds})"
        )

    for engine in ("criu", "docker"):
        counts = {k.split(":", 1)[1]: n for k, n in EDITS_RUN.items() if k.startswith(engine + ":")}
        if counts:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
            terminalreporter.write_line(
                f"edit-sequence differential test, {engine} engine, {under}: "
                f"{sum(counts.values())} edits, each resumed `tonic run --plain` equal to a "
                f"fresh `node FILE` ({kinds})"
            )
    modules = {k.split(":", 1)[1]: n for k, n in EDITS_RUN.items() if k.startswith("esm:")}
    if modules:
        total = sum(modules.values())
        resumed = EDITS_RUN["esm-resumed"]
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(modules.items()))
        terminalreporter.write_line(
            f"ES module edit sequence, criu engine, {under}: {total} edits, each resumed "
            f"`tonic run --plain` equal to a fresh `node FILE`; {resumed} of {total} "
            f"({100 * resumed // total}%) resumed from a snapshot ({kinds})"
        )


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running server, and the environment of clients that use it (never start one).
    Its commands have a snapshot cache of their own: they never merely replay what
    in-process runs of the same notebooks stored."""
    from tests.helpers import gone, tonic

    runtime = tmp_path_factory.mktemp("runtime")
    runtime.chmod(0o700)
    cache = tmp_path_factory.mktemp("served-cache")
    env = dict(
        os.environ, TONIC_RUNTIME_DIR=str(runtime), TONIC_SERVER="on", TONIC_CACHE=str(cache)
    )
    out = tonic("server", "start", env=env)
    assert out.code == 0, out.describe()
    pid = int(out.stdout.split()[-1])
    yield env
    out = tonic("server", "stop", env=env)
    assert out.code == 0, out.describe()
    assert gone(pid), "the server did not stop"
    from tonic.store.ingest import settled

    with settled(cache):  # its detached ingest workers are done before pytest cleans up
        pass
