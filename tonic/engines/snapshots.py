"""What every snapshot engine does the same way: which run to make (a stored one, a
resumed one, a fresh one), falling back when a resume cannot be trusted, and when a
pause is worth a snapshot."""

from __future__ import annotations

import os
from collections.abc import Callable

from tonic.engines import clockshim
from tonic.errors import EngineError
from tonic.kernel.driver import KernelOptions, Launcher, PauseHook, Resume, run_kernel
from tonic.kernel.pipes import KernelProcess, Pipes
from tonic.kernel.protocol import continues
from tonic.results import BufferSink, RunResult, Sink
from tonic.timetravel.planner import Choice, Planner, Verdict

# A snapshot costs about 40-80 ms (CRIU) or 250 ms (docker). After cells that together
# ran for less than this, the pause is not dumped: resuming from the snapshot before them
# and running them again costs no more.
SNAPSHOT_MIN_MS = 50.0


def run_kernel_with_snapshots(
    planner: Planner,
    sink: Sink,
    choice: Choice | None,
    *,
    engine: str,
    timeout: float | None,
    stop_on_error: bool,
    on_pause: PauseHook,
    launcher: Launcher,
    channels: Callable[[KernelProcess], Pipes] | None = None,
    shim: bool = True,
) -> RunResult:
    """One kernel run of a snapshot engine, fresh or from `choice` (its launcher restores
    it). libuv must not open an io_uring (CRIU cannot dump one); the clock shim is
    preloaded when `shim` says this machine's C library is the kernel's."""
    overrides = {"UV_USE_IO_URING": "0"}
    path = clockshim.shim(planner.store.root)[0] if shim else None
    if path is not None:
        user = os.environ.get("LD_PRELOAD")
        overrides["LD_PRELOAD"] = f"{path}:{user}" if user else str(path)
    elif shim:
        planner.notes.append(
            "no clock shim (no C compiler): time spent at snapshots counts on node's "
            "clocks, so timers of different delays in different cells may reorder"
        )
    resume = None if choice is None else Resume(choice.pause, choice.cells, choice.command)
    return run_kernel(
        planner.program,
        planner.watch(sink),
        engine=engine,
        timeout=timeout,
        options=KernelOptions(
            on_pause=on_pause,
            launcher=launcher,
            env_overrides=overrides,
            resume=resume,
            snapshots=True,
            clock_shim=path is not None,
            stop_on_error=stop_on_error,
            channels=channels,
        ),
    )


class RestoreError(EngineError):
    """A snapshot could not be restored (the run falls back to a fresh one)."""


def snapshot_min_ms() -> float:
    raw = os.environ.get("TONIC_SNAPSHOT_MIN_MS")
    try:
        return max(0.0, float(raw)) if raw else SNAPSHOT_MIN_MS
    except ValueError:
        raise EngineError(f"TONIC_SNAPSHOT_MIN_MS={raw!r} is not a number") from None


class Policy:
    """Says at each pause whether to take a snapshot there."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.min_ms = snapshot_min_ms()
        self.unsaved_ms = 0.0  # cell time since the last snapshot (or the restored one)

    def due(self, k: int) -> bool:
        cell = self.planner.live.get(k)
        self.unsaved_ms += (cell.ms or 0.0) if cell is not None else 0.0
        if self.unsaved_ms < self.min_ms:
            return False
        self.unsaved_ms = 0.0
        return True


# One kernel run: from `choice` (None: fresh), streaming to the sink; `stop_on_error`
# for a continued run (see run_with_snapshots).
Attempt = Callable[[Choice | None, Sink, bool], RunResult]


def run_with_snapshots(planner: Planner, sink: Sink, attempt: Attempt) -> RunResult:
    """A stored run of this exact notebook, else a resumed run, else a fresh one."""
    with planner.locked():
        stored = planner.complete_run()
        if stored is not None:
            return planner.replay_stored(stored, sink)
        choice = planner.choose()
        continued = choice is not None and continues(choice.command)
        # A continued run evaluates the edited cells with eval: an uncaught error there
        # would be reported with other stack frames (and sometimes columns) than node's.
        # So its output is held back; at an uncaught error, it is dropped and the
        # notebook runs afresh, natively compiled. (An early error in the edited file,
        # which node reports before running anything, is one: the kernel compiles the
        # whole new file, as node's loader would, before it runs the rest.)
        held = BufferSink() if continued else None
        try:
            result = attempt(choice, held or sink, continued)
        except RestoreError as err:
            planner.verdicts.append(Verdict(choice.pause if choice else 0, False, str(err)))
            note = f"{err}; ran afresh"
        else:
            if not result.aborted:
                if held is not None:
                    held.release(sink)
                return result
            note = "an uncaught error after resuming: ran afresh for node's exact report"
        planner.fresh()
        result = attempt(None, sink, False)
        result.notes.append(note)
        return result


def finish(
    planner: Planner,
    result: RunResult,
    choice: Choice | None,
    restore_seconds: float,
    failed: str | None,
) -> RunResult:
    """Notes and time saved on a finished kernel run; its record, for the next run."""
    result.notes.extend(planner.notes)
    if choice is not None:
        result.saved_seconds = max(0.0, choice.saved_seconds - restore_seconds)
        result.notes.extend(choice.notes)
    if result.aborted:
        return result
    if failed:
        result.notes.append(failed)
    if planner.track_files and planner.files_broken:
        result.notes.append(f"no snapshots of this run's files: {planner.files_broken}")
    planner.finish(result)
    return result
