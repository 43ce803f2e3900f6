"""What differs between the snapshot engines (snapshots.py runs the one lifecycle): a
`Backend` opens a `Session` for one `tonic run` (criu: find CRIU; docker: connect,
resolve the image), and the session makes a `Kernel` for each kernel run: launch,
restore a choice, checkpoint at a pause, close."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tonic.engines.base import Availability
from tonic.engines.images import Images
from tonic.errors import EngineError
from tonic.kernel.driver import Program
from tonic.kernel.pipes import KernelProcess, Pipes
from tonic.store import Store
from tonic.timetravel.choose import Choice
from tonic.timetravel.records import SnapshotRecord


class RestoreError(EngineError):
    """A snapshot could not be restored (the run falls back to a fresh one)."""


class Kernel(Protocol):
    """A snapshot engine's part of one kernel run, fresh or restored."""

    def launch(self, program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
        """Start a fresh kernel with the given pipes (fds in tonic's process) and env."""
        ...

    def restore(
        self,
        choice: Choice,
        images: Images,
        pipes: Pipes,
        env: dict[str, str],
        *,
        held: bool = False,
    ) -> KernelProcess:
        """Restore the chosen snapshot from its images (`held`: every process left
        stopped, until `resume`: a standby)."""
        ...

    def resume(self) -> None:
        """Let a tree restored `held` run."""
        ...

    def checkpoint(self, record: SnapshotRecord, folder: Path) -> None:
        """Checkpoint the paused kernel into `folder`, a new name under the cache's
        staging folder (the kernel makes it, 0700), which the store takes over; fill
        in the engine's part of `record`."""
        ...

    def tree_pid(self) -> int | None:
        """A pid in the PID namespace that holds every process of the notebook, for
        tonic to observe them (None: they cannot be observed)."""
        ...

    def channels(self, proc: KernelProcess) -> Pipes:
        """tonic's ends of the kernel's channels, when the launch made them itself
        (Session.channels)."""
        ...

    def close(self) -> dict[str, object]:
        """The kernel run is over (its process is gone): clean up; its measurements, and
        under "problem" what went wrong unseen that makes the run's outcome doubtful (one
        line on stderr; the run is not kept)."""
        ...


@dataclass
class Session:
    """What a snapshot engine set up for one `tonic run`."""

    kernel: Callable[[], Kernel]  # one for each kernel run
    key: dict[str, str] = field(default_factory=dict)  # what else snapshots depend on
    # tonic observes the notebook's processes (tonic/observe/): it follows the files they
    # write and what the cells read (else the engine keeps the files itself, and the
    # environment and working directory are in its key)
    files: bool = True
    shim: bool = True  # the clock shim fits the kernel's C library
    channels: bool = False  # the kernel makes its own channels (Kernel.channels)
    # the kernel's stdout and stderr may be a terminal or a file (else pipes: docker's
    # FIFOs, kernel/stdio.py's Stdio.pipes_only)
    terminals: bool = True
    lazy_restores: bool = False  # a restore's memory comes in as it is touched


class Backend(Protocol):
    name: str
    description: str

    def availability(self) -> Availability: ...

    def open(self, program: Program, store: Store) -> AbstractContextManager[Session]: ...
