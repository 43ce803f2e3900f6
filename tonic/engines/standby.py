"""The standby of `tonic watch` and `tonic serve`: a kernel restored ahead of the next
save, from the snapshot that save most likely resumes, waiting at its pause.

The guess: the next edit is where the last one was, so the snapshot is the one before
the first cell the last run executed (before the last code cell, after a fresh run). A
run whose choice (made as always, with every check) is exactly that snapshot, with the
same kind of stdout and stderr, takes the waiting kernel instead of restoring one: the
same restore, done earlier. Its processes wait stopped (as CRIU restored them) until the
run lets them go on, so its workers and children too do all they do at the run's time,
observed from the restore on as after a run's own restore; its clocks stand still
meanwhile, as at every pause (the clock shim). Not kept: a kernel with a regular file
open (a restore made after the run's files are put back could differ), one that would
see the SIGCONT that lets it go on (a listener of it), one whose images are over
`TONIC_STANDBY` bytes; a run that chooses anything else ends the standby first. One
standby a notebook, in this process only: `tonic run` keeps none.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tonic.engines.images import images
from tonic.engines.watcher import Watcher
from tonic.errors import EngineError
from tonic.kernel.pipes import KernelProcess, Pipes, close_all, end
from tonic.kernel.protocol import GO
from tonic.kernel.stdio import open_channels
from tonic.procs import descendants
from tonic.results import RunResult
from tonic.store import Store, StoreError, landing
from tonic.store.records import DamagedRecord
from tonic.timetravel.choose import Choice
from tonic.timetravel.places import Places
from tonic.timetravel.records import SnapshotRecord

if TYPE_CHECKING:
    from tonic.engines.backend import Kernel, Session
    from tonic.kernel.driver import Program
    from tonic.timetravel.keys import NotebookKeys


@dataclass
class Standby:
    snapshot_id: str
    stdio: str  # Stdio.key() of the run it is for
    kernel: Kernel
    proc: KernelProcess
    ours: Pipes  # tonic's ends of its channels
    ptys: dict[int, int]  # its pseudo-terminals' masters, with the terminals they copy
    watcher: Watcher  # what its processes do from their restore on (workers run on)

    def channels(self, _proc: KernelProcess) -> Pipes:
        return self.ours

    def launched(self, _program: Program, _pipes: Pipes, _env: dict[str, str]) -> KernelProcess:
        self.kernel.resume()
        return self.proc  # (the run's own channels go unused)

    def discard(self) -> None:
        with contextlib.suppress(OSError, EngineError):
            end(self.proc)
        close_all(self.ours)
        self.kernel.close()
        self.watcher.close()


class _Held:
    enabled = False
    by_notebook: dict[Path, Standby] = {}  # noqa: RUF012 (the process's one table)


def enable() -> None:
    """Keep standbys from now on (the long-lived commands)."""
    _Held.enabled = True


def enabled() -> bool:
    return _Held.enabled


def discard_all() -> None:
    """End every standby (a long-lived command ends)."""
    while _Held.by_notebook:
        _, standby = _Held.by_notebook.popitem()
        standby.discard()


def take(path: Path, choice: Choice | None, stdio: str) -> Standby | None:
    """The standby of notebook `path` if it is this choice's kernel; any other ends."""
    standby = _Held.by_notebook.pop(path, None)
    if standby is None:
        return None
    fits = choice is not None and standby.snapshot_id == choice.snapshot_id
    if fits and standby.stdio == stdio and standby.proc.poll() is None:
        return standby
    standby.discard()
    return None


def prepare(
    store: Store,
    session: Session,
    program: Program,
    keys: NotebookKeys,
    result: RunResult,
    limit: int,
) -> None:
    """After a run: restore the standby for the next one (nothing when none is due)."""
    if result.stored:  # nothing ran: the standby held is as good as before
        return
    old = _Held.by_notebook.pop(program.path, None)
    if old is not None:
        old.discard()
    if limit <= 0 or session.channels or program.stdio.files() or program.stdin:
        return
    choice = _guess(store, program, keys, result, limit)
    if choice is None:
        return
    channels = open_channels(program.stdio)
    kernel = session.kernel()
    watcher = Watcher(store.root, enabled=session.files)
    proc: KernelProcess | None = None
    try:
        with images(store, choice) as found:
            proc = kernel.restore(choice, found, channels.theirs, {}, held=True)
            watcher.attach(kernel.tree_pid())  # as a run's restore: snapshots.py
            watcher.read_now()
        if _opens_files(proc.pid) or _catches(proc.pid, signal.SIGCONT):
            raise EngineError("the restored kernel has a file open, or would see its SIGCONT")
    except (EngineError, OSError, StoreError, KeyError):
        if proc is not None:
            with contextlib.suppress(OSError, EngineError):
                end(proc)
        close_all(channels.ours)
        kernel.close()
        watcher.close()
        return
    finally:
        close_all(channels.theirs)
    _Held.by_notebook[program.path] = Standby(
        choice.snapshot_id,
        program.stdio.key(),
        kernel,
        proc,
        channels.ours,
        channels.ptys,
        watcher,
    )


def _guess(
    store: Store, program: Program, keys: NotebookKeys, result: RunResult, limit: int
) -> Choice | None:
    """The newest snapshot of the longest prefix before the cell the next edit most
    likely changes (its record is checked again when a run chooses it)."""
    code = [r.cell.index for r in result.cells if r.cell.runs]
    ran = [r.cell.index for r in result.cells if r.cell.runs and r.origin == "executed"]
    if not code:
        return None
    edited = ran[0] if result.restored and ran else code[-1]
    places = Places.of(program.path, store.root)
    landed = landing.landed(store.root)  # (the run's own dumps are still being stored)
    for k in sorted((k for k in keys.prefixes if k < edited), reverse=True):
        tag = keys.prefixes[k]
        for info in landing.before(landed, tag, store.find(tag)):
            if info.logical_bytes > limit:
                return None
            try:
                record = SnapshotRecord.from_meta(info.meta, places)
            except DamagedRecord:
                continue
            return Choice(info.id, record, k, (), GO, [], 0.0, [])
    return None


def _catches(pid: int, signum: int) -> bool:
    """Whether a process of the tree at `pid` has a handler of `signum` (node: a listener
    of process.on('SIGCONT'), which the held standby's resume would call)."""
    for each in (pid, *descendants(pid)):
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{each}/status") as status:
            for line in status:
                if line.startswith("SigCgt:") and int(line.split()[1], 16) >> (signum - 1) & 1:
                    return True
    return False


def _opens_files(pid: int) -> bool:
    """Whether a process of the tree at `pid` has a regular file open."""
    for each in (pid, *descendants(pid)):
        folder = f"/proc/{each}/fd"
        with contextlib.suppress(OSError):
            for fd in os.listdir(folder):
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(os.stat(f"{folder}/{fd}").st_mode):
                        return True
    return False
