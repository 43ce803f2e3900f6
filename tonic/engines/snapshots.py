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

Each run first removes the staging leftovers of processes that are gone (a killed ingest
worker's dumps: Store.sweep). When the cache's disk is full the run takes no snapshots
and writes nothing to the cache: it runs as the replay engine does, or, when the disk
fills up midway, goes on without snapshots; either way with one line on stderr
(RunResult.problems).

What differs between engines is behind two small protocols (backend.py): a `Backend`
opens a `Session` for one `tonic run`, and the session makes a `Kernel` for each kernel
run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable

from tonic.engines import natives, standby
from tonic.engines.backend import Backend, RestoreError, Session
from tonic.engines.base import Availability
from tonic.engines.images import DamagedImages, images, staging
from tonic.engines.policy import Policy
from tonic.engines.replay import ReplayEngine
from tonic.engines.standby import Standby
from tonic.engines.watcher import Watcher
from tonic.errors import EngineError
from tonic.kernel.driver import KernelOptions, Program, run_kernel
from tonic.kernel.pipes import KernelProcess, Pipes
from tonic.kernel.protocol import GO, Command, Setup
from tonic.kernel.state import Resume
from tonic.procs import tree_rss
from tonic.results import RunResult, Sink
from tonic.settings import Settings, node_binary
from tonic.store import Store, StoreError, landing
from tonic.store.ingest import Worker
from tonic.store.layout import disk_full, is_full_error
from tonic.timetravel.choose import Choice, Chooser
from tonic.timetravel.keys import Environment, NotebookKeys
from tonic.timetravel.recorder import Observed, Recorder, show_stored


def full_disk(stopped_at: int | None) -> str:
    """The line on stderr of a run that found the cache's disk full."""
    if stopped_at is None:
        return "the cache's disk is full: ran without snapshots"
    return f"the cache's disk is full: no snapshots from cell {stopped_at} on"


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
        store.sweep()  # e.g. the dumps of an ingest worker that was killed
        if store.full():
            result = ReplayEngine().run(program, sink, timeout=timeout)
            result.problems.append(full_disk(None))
            return result
        with self.backend.open(program, store) as session:
            given = fitted(program, session)
            run = _Run(self, given, store, session, timeout)
            with store.lock(f"notebook:{program.path}"):
                result = run.run(sink)
                if standby.enabled():
                    standby.prepare(store, session, given, run.keys, result, self.settings.standby)
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
        held = standby.take(self.program.path, choice, self.program.stdio.key())
        steps = _Steps(self, recorder, choice, held)
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
                    channels=held.channels if held else self._channels(steps),
                    channel_ptys=held.ptys if held else {},
                ),
            )
        finally:
            steps.worker.release()  # the worker stores what it has on its own
            try:
                stats = steps.kernel.close()
            finally:
                recorder.step(None, steps.observed())
                steps.watcher.close()
        problem = stats.pop("problem", None)  # what the kernel says went wrong unseen
        if problem is not None:
            result.problems.append(str(problem))
            steps.failed = steps.failed or str(problem)
        result.stats = {
            **stats,
            "restore_seconds": steps.restore_seconds if choice else None,
            "verify_seconds": steps.verify_seconds if choice else None,
            "restored_from": steps.restored_from,
            "observe_seconds": steps.observe_seconds,
            "standby": held is not None,  # restored ahead (standby.py)
        }
        return self._finish(result, recorder, choice, steps)

    def _channels(self, steps: _Steps) -> Callable[[KernelProcess], Pipes] | None:
        return steps.kernel.channels if self.session.channels else None

    def _kernel_env(self, recorder: Recorder) -> tuple[dict[str, str], bool]:
        """What the kernel's environment adds (hidden again from the notebook's
        process.env), and whether the clock shim is preloaded. libuv must not open an
        io_uring (CRIU cannot dump one); the clock shim is preloaded when the session
        says this machine's C library is the kernel's."""
        overrides = {"UV_USE_IO_URING": "0"}
        if not self.session.shim:
            return overrides, False
        path, why = natives.shim(self.store.root)
        if path is None:
            recorder.notes.append(
                f"no clock shim ({why}): time spent at snapshots counts on node's "
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
        if self.store.filled:  # the one reason that counts, on stderr
            result.problems.append(full_disk(steps.stopped_at))
        else:
            if steps.failed:
                result.notes.append(f"{steps.failed} (this run is not kept for the next one)")
            if recorder.files_broken:
                result.notes.append(f"no snapshots of this run's files: {recorder.files_broken}")
        # Only the notebook's own outcome is kept: not after tonic's snapshots failed
        # (a dump cut short can leave node damaged), nor of a kernel a signal ended (maybe
        # sent from outside: a user's kill, the OOM killer); the next run runs again.
        if not steps.failed and result.signal is None:
            recorder.finish(result)
        return result


class _Steps:
    """A kernel run's launch (or restore) and its pauses, where snapshots are taken."""

    def __init__(
        self, run: _Run, recorder: Recorder, choice: Choice | None, held: Standby | None
    ) -> None:
        self.store = run.store
        self.held = held  # the kernel restored ahead (standby.py)
        self.kernel = held.kernel if held else run.session.kernel()
        self.recorder = recorder
        self.choice = choice
        settings = run.engine.settings
        self.policy = Policy(
            recorder,
            settings.snapshot_min_ms,
            self._rss,
            settings.hot_cache,
            run.session.lazy_restores,
        )
        self.worker = Worker(run.store.root, run.program.path)
        self.restore_seconds = 0.0
        self.restored_from: str | None = None  # hot, dump, store or standby (Images.source)
        self.failed: str | None = None  # why snapshots stopped in this run
        self.stopped_at: int | None = None  # the pause where the cache's disk was full
        self.watcher = held.watcher if held else Watcher(run.store.root, enabled=run.session.files)
        self.observe_seconds = 0.0  # observing, and recording the files and uses
        self.verify_seconds = 0.0  # the restore's wait for the images' check

    def launch(self, program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
        choice = self.choice
        if choice is None:
            proc = self.kernel.launch(program, pipes, env)
            self.watcher.attach(self.kernel.tree_pid())
            return proc
        started = time.monotonic()
        if self.held is not None:  # (observed since its restore)
            proc = self.held.launched(program, pipes, env)
            self.restore_seconds = time.monotonic() - started
            self.restored_from = "standby"
            return proc
        try:
            try:
                with images(self.store, choice) as found:
                    proc = self.kernel.restore(choice, found, pipes, env)
                    self.verify_seconds, self.restored_from = found.waited, found.source
                    self._attach_restored()
            except DamagedImages as err:
                self.recorder.notes.append(
                    f"the unpacked images of the snapshot after cell {choice.pause} were "
                    f"damaged ({err}): restored from the store's copy"
                )
                with images(self.store, choice, unpacked=False) as found:
                    proc = self.kernel.restore(choice, found, pipes, env)
                    self.restored_from = found.source
                    self._attach_restored()
        except (EngineError, KeyError, StoreError, OSError) as err:
            raise RestoreError(f"the snapshot after cell {choice.pause}: {err}") from None
        self.restore_seconds = time.monotonic() - started
        return proc

    def _attach_restored(self) -> None:
        """Observe the restored tree, and take in at once what it did so far (the
        restore's reads of the image files, in the cache, and what its workers and
        children did since), while those folders are still there: read after a scratch
        copy or a landed dump is gone, it could not be named, and the run would lose its
        files' snapshots. The next pause gets it all, as before."""
        self.watcher.attach(self.kernel.tree_pid())
        self.watcher.read_now()

    def _rss(self) -> int:
        pid = self.kernel.tree_pid()
        return tree_rss(pid) if pid is not None else 0

    def observed(self) -> Observed | None:
        started = time.monotonic()
        try:
            return self.watcher.observed()
        finally:
            self.observe_seconds += time.monotonic() - started

    def pause(self, k: int) -> Command:
        observed = self.observed()
        started = time.monotonic()
        files = self.recorder.step(k, observed)
        # The record (every cell so far) only for a snapshot to be taken: the work of a
        # pause without one does not grow with the cells before it.
        due = self.recorder.files_broken is None and self.failed is None and self.policy.due(k)
        record = self.recorder.record_at(k, files) if due else None
        self.observe_seconds += time.monotonic() - started  # its files and uses too
        if self.store.filled and self.stopped_at is None:
            self.stopped_at = k
        if record is None:
            return GO
        folder = None
        try:
            staging(self.store)
            folder = self.worker.folder()  # the worker's, once it has it
            self.kernel.checkpoint(record, folder)
            # What a worker or child read while the dump was being taken is in it too.
            late = self.recorder.late(k, self.observed(), record)
            if late is None:
                shutil.rmtree(folder, ignore_errors=True)
                return GO
            meta = late.meta()
            with contextlib.suppress(OSError):  # (else the next run waits for the store)
                landing.land(folder, late.snapshot_id, late.key, meta)
            self.worker.submit(late.snapshot_id, late.key, folder, meta)
        except (EngineError, OSError) as err:
            if is_full_error(err) or disk_full(self.store.root):
                self.store.filled = True  # (before the dump's part is removed)
                self.stopped_at = k
            if folder is not None:  # taken, but the worker never got it
                shutil.rmtree(folder, ignore_errors=True)
            self.failed = f"snapshots stopped at cell {k}: {err}"
        return GO
