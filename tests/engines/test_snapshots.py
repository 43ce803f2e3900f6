"""The snapshot lifecycle with a backend of the test's own: plain node kernels, "images"
that are a file, and a restore that always fails. No CRIU or Docker is involved: this is
the seam a new snapshot engine plugs into."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tonic import settings
from tonic.engines.backend import Session
from tonic.engines.base import Availability
from tonic.engines.images import Images
from tonic.engines.snapshots import SnapshotEngine
from tonic.errors import EngineError
from tonic.kernel import driver
from tonic.kernel.driver import Program
from tonic.kernel.pipes import KernelProcess, Pipes
from tonic.kernel.program import program_for
from tonic.results import NullSink
from tonic.store import Store
from tonic.store.ingest import settled
from tonic.timetravel.choose import Choice
from tonic.timetravel.records import SnapshotRecord

NOTEBOOK = """\
// %% one
const xs = [1, 2, 3];
console.log('one', xs.length);

// %% two
const total = xs.reduce((a, b) => a + b, 0);
console.log('two', total);

// %% three
console.log('three', total * {factor});
"""


class FakeKernel:
    """Kernels as the replay engine starts them; a checkpoint is a file; no restore."""

    made: list[FakeKernel] = []  # noqa: RUF012 (the test's record of every kernel run)

    def __init__(self) -> None:
        self.checkpoints: list[int] = []
        self.restores = 0
        self.closed = False
        FakeKernel.made.append(self)

    def launch(self, program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
        return driver.popen_launcher(program, pipes, env)

    def restore(
        self, choice: Choice, images: Images, pipes: Pipes, env: dict[str, str]
    ) -> KernelProcess:
        self.restores += 1
        assert (images.files / "memory.img").read_bytes() == b"cells 1-%d" % choice.pause
        raise EngineError("this backend cannot restore")

    def checkpoint(self, record: SnapshotRecord, folder: Path) -> None:
        folder.mkdir(mode=0o700)
        (folder / "memory.img").write_bytes(b"cells 1-%d" % record.pause)
        self.checkpoints.append(record.pause)

    def tree_pid(self) -> int | None:
        return None

    def channels(self, proc: KernelProcess) -> Pipes:
        raise AssertionError("fake kernels use tonic's own pipes")

    def close(self) -> dict[str, object]:
        self.closed = True
        return {"fake": True}


class FakeBackend:
    name = "fake"
    description = "node kernels with pretend snapshots"

    def availability(self) -> Availability:
        return Availability(True, "always")

    @contextlib.contextmanager
    def open(self, program: Program, store: Store) -> Iterator[Session]:
        yield Session(kernel=FakeKernel, files=False, shim=False)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SnapshotEngine]:
    monkeypatch.setenv("TONIC_CACHE", str(tmp_path / "cache"))
    FakeKernel.made.clear()
    monkeypatch.setenv("TONIC_SNAPSHOT_MIN_MS", "0")
    yield SnapshotEngine(FakeBackend(), settings.current())
    with settled(tmp_path / "cache"):  # the ingest worker is done before tmp_path goes
        pass


def node_stdout(path: Path) -> bytes:
    return subprocess.run(["node", str(path)], capture_output=True, check=True).stdout


def run(engine: SnapshotEngine, path: Path) -> tuple[bytes, list[str]]:
    program = program_for(path, plain=True, args=[])
    result = engine.run(program, NullSink())
    out = b"".join(bytes(c.stdout) for c in result.cells) + bytes(result.tail.stdout)
    with settled(Store().root, program.path):  # the snapshots are stored
        pass
    return out, result.notes


def test_lifecycle_with_a_backend_of_its_own(engine: SnapshotEngine, tmp_path: Path) -> None:
    path = tmp_path / "nb.js"
    path.write_text(NOTEBOOK.format(factor=2))
    out, notes = run(engine, path)
    assert out == node_stdout(path)
    fresh = FakeKernel.made[-1]
    assert fresh.checkpoints == [1, 2, 3] and fresh.closed

    # Unchanged: the stored run is shown, no kernel runs.
    out, notes = run(engine, path)
    assert out == node_stdout(path) and len(FakeKernel.made) == 1
    assert "unchanged since the last run" in notes[-1]

    # The last cell edited: cells 1-2 are chosen, their restore fails, the run starts
    # afresh and says why.
    path.write_text(NOTEBOOK.format(factor=3))
    out, notes = run(engine, path)
    assert out == node_stdout(path)
    failed, afresh = FakeKernel.made[1:]
    assert failed.restores == 1 and failed.closed and failed.checkpoints == []
    assert afresh.restores == 0 and afresh.checkpoints == [1, 2, 3] and afresh.closed
    assert any(
        "the snapshot after cell 2: this backend cannot restore; ran afresh" in n for n in notes
    )
