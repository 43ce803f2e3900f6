"""The one lifecycle of a snapshotting run, shared by the criu and docker engines.

    lock the notebook
    a stored run of exactly this notebook?  show it, nothing runs
    choose the snapshot to resume from (timetravel/choose.py), else run afresh
    put the notebook's files into its state, launch or restore the kernel
    at each pause: record it, and checkpoint it when the cells since the last one are
        worth it (Policy); a detached worker stores the images (store/ingest.py)
    finish: notes, time saved, the run's record
    fall back to a fresh run when the restore fails, or when the edited file of a
        continued run does not compile (node reports that before running anything)

What differs between engines is behind two small protocols: a `Backend` opens a
`Session` for one `tonic run` (criu: find CRIU; docker: connect, resolve the image), and
the session makes a `Kernel` for each kernel run: launch, restore a choice, checkpoint
at a pause, close.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tonic.engines import natives
from tonic.engines.base import Availability
from tonic.engines.watcher import Watcher
from tonic.errors import EngineError
from tonic.kernel.driver import KernelOptions, Program, run_kernel
from tonic.kernel.pipes import KernelProcess, Pipes
from tonic.kernel.protocol import GO, Command, Setup
from tonic.kernel.state import Resume
from tonic.results import RunResult, Sink
from tonic.settings import Settings, node_binary
from tonic.store import Store, StoreError, hot
from tonic.store.ingest import Worker
from tonic.store.layout import TMP
from tonic.timetravel.choose import Choice, Chooser
from tonic.timetravel.keys import Environment, NotebookKeys
from tonic.timetravel.recorder import Observed, Recorder, show_stored
from tonic.timetravel.records import SnapshotRecord


class RestoreError(EngineError):
    """A snapshot could not be restored (the run falls back to a fresh one)."""


class Kernel(Protocol):
    """A snapshot engine's part of one kernel run, fresh or restored."""

    def launch(self, program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
        """Start a fresh kernel with the given pipes (fds in tonic's process) and env."""
        ...

    def restore(
        self, choice: Choice, images: Images, pipes: Pipes, env: dict[str, str]
    ) -> KernelProcess:
        """Restore the chosen snapshot from its images."""
        ...

    def checkpoint(self, record: SnapshotRecord, staging: Path) -> Path:
        """Checkpoint the paused kernel into a new folder under `staging`, which the
        store takes over; fill in the engine's part of `record`."""
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
        """The kernel run is over (its process is gone): clean up; its measurements."""
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


class Backend(Protocol):
    name: str
    description: str

    def availability(self) -> Availability: ...

    def open(self, program: Program, store: Store) -> AbstractContextManager[Session]: ...


class Policy:
    """Says at each pause whether to take a snapshot there. A snapshot costs about
    40-80 ms (CRIU) or 250 ms (docker). After cells that together ran for less than
    `min_ms` ($TONIC_SNAPSHOT_MIN_MS), the pause is not dumped: resuming from the
    snapshot before them and running them again costs no more."""

    def __init__(self, recorder: Recorder, min_ms: float) -> None:
        self.recorder = recorder
        self.min_ms = min_ms
        self.unsaved_ms = 0.0  # cell time since the last snapshot (or the restored one)

    def due(self, k: int) -> bool:
        self.unsaved_ms += self.recorder.cell_ms(k)
        if self.unsaved_ms < self.min_ms:
            return False
        self.unsaved_ms = 0.0
        return True


def staging(store: Store) -> Path:
    """Where images are written before they enter the store (the same filesystem)."""
    tmp = store.root / TMP
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    return tmp


@dataclass(frozen=True)
class Images:
    """A snapshot's image files, not to be written to, and a private scratch folder."""

    files: Path
    scratch: Path


@contextlib.contextmanager
def images(store: Store, choice: Choice) -> Iterator[Images]:
    """The snapshot's image files: kept unpacked (store/hot.py) or recreated from the
    store in the scratch folder, which is removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="tonic-restore-", dir=staging(store)))
    try:
        os.chmod(work, 0o700)
        found = hot.lookup(store.root, choice.snapshot_id)
        if found is None:
            found = work / "images"
            try:
                store.materialize(choice.snapshot_id, found)
            except StoreError:
                store.remove(choice.snapshot_id)
                raise
        yield Images(found, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def keys_for(engine: str, program: Program, session: Session) -> NotebookKeys:
    """The keys of `program`'s snapshots and stored run under this engine's session."""
    environment = Environment.current(
        node=node_binary(),
        engine=engine,
        path=program.path,
        args=program.args,
        inspect=program.inspect,
        env=program.env,
        stdin=program.stdin,
        stdio=program.stdio.key(),
    )
    return NotebookKeys.of(environment, program.notebook, session.key)


def fitted(program: Program, session: Session) -> Program:
    """`program` with the stdout and stderr this engine can give it."""
    if session.terminals:
        return program
    return dataclasses.replace(program, stdio=program.stdio.pipes_only())


class SnapshotEngine:
    """An engine that snapshots at every pause and resumes from the longest valid prefix;
    `backend` says how (criu, docker)."""

    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings
        self.name = backend.name
        self.description = backend.description

    def availability(self) -> Availability:
        return self.backend.availability()

    def chooser(self, program: Program) -> Chooser:
        """What the next run would resume from (`tonic why`)."""
        store = Store(self.settings.cache)
        with self.backend.open(program, store) as session:
            program = fitted(program, session)
            return Chooser(program, store, keys_for(self.name, program, session))

    def run(self, program: Program, sink: Sink, *, timeout: float | None = None) -> RunResult:
        store = Store(self.settings.cache)
        with self.backend.open(program, store) as session:
            given = fitted(program, session)
            run = _Run(self, given, store, session, timeout)
            with store.lock(f"notebook:{program.path}"):
                result = run.run(sink)
        if given.stdio != program.stdio:
            result.notes.append(
                f"the {self.name} engine gives node pipes for stdout and stderr: the "
                "notebook does not see the terminal or file they are here"
            )
        return result


class _Run:
    """One `tonic run` of a snapshot engine: one kernel run, or two with a fallback."""

    def __init__(
        self,
        engine: SnapshotEngine,
        program: Program,
        store: Store,
        session: Session,
        timeout: float | None,
    ) -> None:
        self.engine = engine
        self.program = program
        self.store = store
        self.session = session
        self.timeout = timeout
        self.keys = keys_for(engine.name, program, session)
        self.chooser = Chooser(program, store, self.keys)

    def run(self, sink: Sink) -> RunResult:
        """A stored run of this exact notebook, else a resumed run, else a fresh one;
        with a note on each record the chooser ignored (a damaged snapshot is removed:
        its id would keep a new one of the same run out)."""
        result = self._run(sink)
        result.notes.extend(n for n in self.chooser.ignored if n not in result.notes)
        return result

    def _run(self, sink: Sink) -> RunResult:
        stored = self.chooser.stored_run()
        if stored is not None:
            return show_stored(self.store, self.program, stored, sink, self.chooser.around.digest)
        choice, _ = self.chooser.choose()
        for damaged in self.chooser.damaged:
            with contextlib.suppress(OSError, StoreError):
                self.store.remove(damaged)
        try:
            result = self.attempt(choice, sink)
        except RestoreError as err:
            note = f"{err}; ran afresh"
        else:
            if result.aborted is None:
                return result
            note = result.aborted
        result = self.attempt(None, sink)
        result.notes.append(note)
        return result

    def attempt(self, choice: Choice | None, sink: Sink) -> RunResult:
        """One kernel run, fresh or from `choice` (aborted, unseen, when the edited file
        of a continued run does not compile)."""
        observe = self.session.files
        digest = self.chooser.around.digest
        recorder = Recorder(
            self.program, self.store, self.keys, choice, observe=observe, digest=digest
        )
        recorder.prepare_files()
        steps = _Steps(self, recorder, choice)
        resume = None
        if choice is not None:
            program = self.program
            setup = Setup(dict(program.env), str(program.cwd), program.inspect)
            resume = Resume(choice.pause, choice.cells, choice.command, setup if observe else None)
        stats: dict[str, object] = {}
        try:
            overrides, shim = self._kernel_env(recorder)
            result = run_kernel(
                self.program,
                recorder.watch(sink),
                engine=self.engine.name,
                timeout=self.timeout,
                options=KernelOptions(
                    on_pause=steps.pause,
                    on_hello=steps.observed,  # node's own start-up is not the notebook's
                    on_save=recorder.save,
                    launcher=steps.launch,
                    env_overrides=overrides,
                    resume=resume,
                    snapshots=True,
                    clock_shim=shim,
                    channels=steps.kernel.channels if self.session.channels else None,
                ),
            )
        finally:
            steps.worker.release()  # the worker stores what it has on its own
            try:
                stats = steps.kernel.close()
            finally:
                recorder.step(None, steps.observed())
                steps.watcher.close()
        result.stats = {
            **stats,
            "restore_seconds": steps.restore_seconds if choice else None,
            "observe_seconds": steps.observe_seconds,
        }
        return self._finish(result, recorder, choice, steps)

    def _kernel_env(self, recorder: Recorder) -> tuple[dict[str, str], bool]:
        """What the kernel's environment adds (hidden again from the notebook's
        process.env), and whether the clock shim is preloaded. libuv must not open an
        io_uring (CRIU cannot dump one); the clock shim is preloaded when the session
        says this machine's C library is the kernel's."""
        overrides = {"UV_USE_IO_URING": "0"}
        if not self.session.shim:
            return overrides, False
        path = natives.shim(self.store.root)[0]
        if path is None:
            recorder.notes.append(
                "no clock shim (no C compiler): time spent at snapshots counts on node's "
                "clocks, so timers of different delays in different cells may reorder"
            )
            return overrides, False
        user = self.program.env.get("LD_PRELOAD")
        overrides["LD_PRELOAD"] = f"{path}:{user}" if user else str(path)
        return overrides, True

    def _finish(
        self, result: RunResult, recorder: Recorder, choice: Choice | None, steps: _Steps
    ) -> RunResult:
        """Notes and time saved on a finished kernel run; its record, for the next run."""
        result.notes.extend(recorder.notes)
        if choice is not None:
            result.saved_seconds = max(0.0, choice.saved_seconds - steps.restore_seconds)
            result.notes.extend(choice.notes)
        if result.aborted is not None:
            return result
        if steps.failed:
            result.notes.append(steps.failed)
        if recorder.files_broken:
            result.notes.append(f"no snapshots of this run's files: {recorder.files_broken}")
        recorder.finish(result)
        return result


class _Steps:
    """A kernel run's launch (or restore) and its pauses, where snapshots are taken."""

    def __init__(self, run: _Run, recorder: Recorder, choice: Choice | None) -> None:
        self.store = run.store
        self.kernel = run.session.kernel()
        self.recorder = recorder
        self.choice = choice
        self.policy = Policy(recorder, run.engine.settings.snapshot_min_ms)
        self.worker = Worker(run.store.root, run.program.path)
        self.restore_seconds = 0.0
        self.failed: str | None = None  # why snapshots stopped in this run
        self.watcher = Watcher(run.store.root, enabled=run.session.files)
        self.observe_seconds = 0.0  # observing, and recording the files and uses

    def launch(self, program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
        choice = self.choice
        if choice is None:
            proc = self.kernel.launch(program, pipes, env)
            self.watcher.attach(self.kernel.tree_pid())
            return proc
        started = time.monotonic()
        try:
            with images(self.store, choice) as found:
                proc = self.kernel.restore(choice, found, pipes, env)
        except (EngineError, KeyError) as err:
            raise RestoreError(f"the snapshot after cell {choice.pause}: {err}") from None
        self.watcher.attach(self.kernel.tree_pid())
        self.restore_seconds = time.monotonic() - started
        return proc

    def observed(self) -> Observed | None:
        started = time.monotonic()
        try:
            return self.watcher.observed()
        finally:
            self.observe_seconds += time.monotonic() - started

    def pause(self, k: int) -> Command:
        observed = self.observed()
        started = time.monotonic()
        record = self.recorder.record_at(k, observed)
        self.observe_seconds += time.monotonic() - started  # its files and uses too
        if record is None or self.failed is not None or not self.policy.due(k):
            return GO
        folder = None
        try:
            folder = self.kernel.checkpoint(record, staging(self.store))
            # What a worker or child read while the dump was being taken is in it too.
            late = self.recorder.late(k, self.observed(), record)
            if late is None:
                shutil.rmtree(folder, ignore_errors=True)
                return GO
            self.worker.submit(late.snapshot_id, late.key, folder, late.meta())
        except (EngineError, OSError) as err:
            if folder is not None:  # taken, but the worker never got it
                shutil.rmtree(folder, ignore_errors=True)
            self.failed = f"snapshots stopped at cell {k}: {err}"
        return GO
