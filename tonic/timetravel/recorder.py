"""The record of one kernel run as it happens: each cell as it finishes, a snapshot
record at each pause, the files the run changed (fstravel.py); at the end, the record
of the whole run, for an unchanged notebook's next run."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tonic.kernel.driver import Program, kernel_argv, kernel_file
from tonic.kernel.stdio import file_paths
from tonic.results import CellResult, RunResult, Sink, show_finished, show_output
from tonic.store import DamagedRecord, Store, StoreError, is_full_error
from tonic.timetravel import fstravel
from tonic.timetravel.choose import Choice
from tonic.timetravel.deps import Digests, Surroundings, seen_now
from tonic.timetravel.keys import NotebookKeys, file_hash, sha256
from tonic.timetravel.places import wrote_of
from tonic.timetravel.records import (
    FileChanges,
    RunRecord,
    SnapshotRecord,
    cell_to_meta,
    save_run,
)


class _Watch:
    """Passes everything to the real sink, keeping each finished cell's record. When the
    run is observed, a finished cell reaches the sink once its step is taken in (what it
    read and wrote is part of its record)."""

    def __init__(
        self, sink: Sink, done: dict[int, CellResult], wrote: set[str], observe: bool
    ) -> None:
        self.sink = sink
        self.done = done
        self.wrote = wrote  # every path the done cells wrote (kept as they come: linear)
        self.observe = observe
        self.held: list[CellResult] = []
        self.next: CellResult | None = None  # started while the cell before it is held

    def flush(self) -> None:
        for result in self.held:
            self.sink.cell_done(result)
        self.held.clear()
        if self.next is not None:
            self.sink.cell_started(self.next)
            self.next = None

    def output(self, stream: int, data: bytes) -> None:
        self.sink.output(stream, data)

    def cell_started(self, result: CellResult) -> None:
        if self.held:
            self.next = result  # the sink sees cells in order: the held one ends first
        else:
            self.sink.cell_started(result)

    def cell_done(self, result: CellResult) -> None:
        self.done[result.cell.index] = result
        self.wrote.update(result.wrote)
        if not self.observe:
            result.uses = {}  # the engine's key covers the surroundings
            self.sink.cell_done(result)
        elif result.origin == "restored":
            self.sink.cell_done(result)  # its record came with the snapshot's
        else:
            self.held.append(result)


def _resolve_local(directory: Path, specifier: str) -> str | None:
    """The file a relative specifier names (node's extension and index rules, roughly)."""
    if not specifier.startswith(("./", "../", "/")):
        return None
    base = directory / specifier
    for candidate in (base, *(Path(f"{base}{ext}") for ext in (".js", ".mjs", ".cjs", ".json"))):
        if candidate.is_file():
            return str(candidate.resolve())
    index = base / "index.js"
    return str(index.resolve()) if index.is_file() else None


def _is_local(path: str) -> bool:
    return os.path.isabs(path) and "/node_modules/" not in path


@dataclass(frozen=True)
class Observed:
    """What the notebook's processes did to files since the last step, as the engine
    observed it (tonic/observe/): files opened, directories listed, paths changed (with
    whether the change created them), or why some of it may be missing."""

    opened: tuple[str, ...] = ()
    listed: tuple[str, ...] = ()
    changed: tuple[tuple[str, bool], ...] = ()
    lost: str | None = None


# Reads that are not the notebook's inputs: the system's programs and libraries (a
# restore opens them again), tonic's kernel and the kernel's private folder, and node's
# binary (in every key already).
_NOT_INPUTS: tuple[str, ...] = ("/usr/lib/", "/usr/lib64/", "/lib/", "/lib64/", "/usr/libexec/")
_NOT_INPUTS += ("/etc/ld.so.", "/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/")


def _not_inputs(program: Program) -> tuple[str, ...]:
    node = os.path.realpath(kernel_argv(program)[0])
    return (*_NOT_INPUTS, str(kernel_file("kernel.js").parent) + "/", node)


def _input(path: str, skip: tuple[str, ...]) -> bool:
    return not path.startswith(skip) and "/tonic-kernel-" not in path


SAVE_MAX = 16 << 20  # the biggest file kept before the main thread first opens it
KEEP_EVERY = 0.05  # seconds between two writes of the last state before a file write
KEEP_FIRST = 64  # paths marked before each first write, however soon after another


class Recorder:
    """One kernel run of `program`, fresh or resumed from `choice`. `observe`: the engine
    observes the notebook's processes, so tonic follows the files they write and what
    the cells read (an engine that keeps files itself says False)."""

    def __init__(
        self,
        program: Program,
        store: Store,
        keys: NotebookKeys,
        choice: Choice | None,
        *,
        observe: bool = True,
        digest: Digests | None = None,
    ) -> None:
        self.program = program
        self.nb = program.notebook
        self.store = store
        self.keys = keys
        self.choice = choice
        self.observe = observe
        self.live: dict[int, CellResult] = {}  # cells that finished in this kernel run
        self._live_wrote: set[str] = set()  # every path they were seen to write
        self.notes: list[str] = []
        if choice is None or choice.continued:
            unless_full(store, lambda: store.put_blob(self.nb.data))  # the version it compiles
        self.lineage = choice.lineage if choice is not None else [sha256(self.nb.data)]
        self.project = program.path.parent
        self._watch: _Watch | None = None
        self.digest = digest or Digests()  # the chooser's: files it hashed are not again
        self.tracker = fstravel.Tracker(store.put_blob)
        self._saved: str | None = None  # the last state as last saved (its JSON)
        self._kept_at = 0.0  # when
        self._marked: set[str] = set()  # paths the last state marks as being written
        self.skip = _not_inputs(program)
        self.stdio_files = file_paths(program.stdio)

    def watch(self, sink: Sink) -> _Watch:
        self._watch = _Watch(sink, self.live, self._live_wrote, self.observe)
        return self._watch

    def cell_ms(self, k: int) -> float:
        """How long cell k ran in this kernel run (0 for one that did not)."""
        cell = self.live.get(k)
        return (cell.ms or 0.0) if cell is not None else 0.0

    # -- files and uses -----------------------------------------------------------------

    def prepare_files(self) -> None:
        """Put the notebook's files into the state of the chosen snapshot (or their
        starting state), then follow this run's writes."""
        if not self.observe:
            return
        record = self.choice.record if self.choice is not None else None
        target, cells = (record.files, record.cells) if record is not None else ({}, [])
        starting, note = put_files(
            self.store, self.program.path, target, self.digest, wrote_of(cells)
        )
        if note is not None:
            self.notes.append(note)
        self.tracker.start(starting, target)
        self._keep_last(running=True)  # a restored run goes on writing the snapshot's paths

    def save(self, path: str) -> None:
        """Keep what is at `path` before the main thread first changes it (up to
        SAVE_MAX: a bigger file the notebook changes starts afresh at the next run), and
        mark it on disk as being written (the next run rewinds it if this one dies)."""
        if not self.observe:
            return
        if path not in self.tracker.before:
            with contextlib.suppress(OSError):
                if os.path.isfile(path) and os.path.getsize(path) > SAVE_MAX:
                    return
            self.tracker.before[path] = self.tracker.state(path, quiet=True)
        # Durable before the write (past the first paths, at most every KEEP_EVERY
        # seconds: a loop writing thousands of files would write the record as often).
        if path not in self._marked and (
            len(self._marked) < KEEP_FIRST or time.monotonic() - self._kept_at >= KEEP_EVERY
        ):
            self._keep_last(running=True, also=path)

    @property
    def files_broken(self) -> str | None:
        return self.tracker.broken if self.observe else None

    def step(self, k: int | None, observed: Observed | None) -> FileChanges:
        """Take in what the processes did since the last step (at pause k, or at the
        end: None); the files the run changed so far."""
        if not self.observe:
            return {}
        observed = self._without_stdio(observed)
        if observed is None or observed.lost is not None:
            self.tracker.broken = observed.lost if observed else "the files were not observed"
        else:
            self.tracker.step(observed.changed)
            cell = self.live.get(k) if k is not None else None
            held = self._watch.held if self._watch is not None else []
            if k is None and held and held[-1].origin != "restored":
                cell = held[-1]  # it ended the run (an error, an exit)
            elif k is None and self.live:  # the event loop after the last cell: the
                cell = self.live[max(self.live)]  # run's record depends on what it read
            if cell is not None:
                self._fill_uses(cell, observed, keep=k is None)
            else:
                self._fill_wrote(None, observed)
        if self._watch is not None:
            self._watch.flush()
        self._keep_last(running=k is not None)
        return self.tracker.changes()

    def _keep_last(self, running: bool, also: str | None = None) -> None:
        """Write the last state (fstravel.save_last): while the run goes on, every path
        it changed (and `also`, about to be) as being written; at its end, as it is. A
        state unchanged since it was last written is not written again."""
        files = self.tracker.changes()
        if running:
            if also is not None:
                files[also] = [self.tracker.before.get(also), None]
            files = {p: [pair[0], fstravel.WRITING] for p, pair in files.items()}
            self._marked.update(files)
        wrote = self._live_wrote | set(files)  # (a path about to be written: not yet a cell's)
        saved = json.dumps([files, sorted(wrote)], sort_keys=True)
        if saved != self._saved:
            unless_full(
                self.store, lambda: fstravel.save_last(self.store, self.program.path, files, wrote)
            )
            self._saved, self._kept_at = saved, time.monotonic()

    def late(
        self, k: int, observed: Observed | None, record: SnapshotRecord
    ) -> SnapshotRecord | None:
        """The record of the snapshot at pause k, with what the processes did while it
        was taken (a worker or child still running): their reads count for cell k.
        None: what they did is not known, so the snapshot is not kept."""
        if not self.observe:
            return record
        observed = self._without_stdio(observed)
        if observed is None or observed.lost is not None:
            self.tracker.broken = observed.lost if observed else "the files were not observed"
            return None
        self.tracker.step(observed.changed)
        if self.store.filled:
            return None
        cell = self.live.get(k)
        if cell is not None and (observed.opened or observed.listed):
            self._fill_uses(cell, observed, keep=True)
        else:
            self._fill_wrote(cell, observed)
        if cell is not None:
            record.cells[-1] = cell_to_meta(cell)
        return record

    def _without_stdio(self, observed: Observed | None) -> Observed | None:
        """What the processes did, less their writes to the file that is their stdout or
        stderr: output, not a file of the notebook's."""
        if observed is None or not self.stdio_files:
            return observed
        return dataclasses.replace(
            observed,
            opened=tuple(p for p in observed.opened if p not in self.stdio_files),
            changed=tuple(c for c in observed.changed if c[0] not in self.stdio_files),
        )

    def _fill_uses(self, cell: CellResult, observed: Observed, keep: bool = False) -> None:
        """The values of what the cell used (the kernel's tokens, the files opened);
        `keep`: add to the values already found."""
        known = dict(cell.uses) if keep else {}
        tokens = [t for t in cell.uses if t not in known]
        tokens += [f"file:{p}" for p in observed.opened if _input(p, self.skip)]
        tokens += [f"dir:{p}" for p in observed.listed if _input(p, self.skip)]
        around = Surroundings(
            self.program.env, str(self.program.cwd), self.digest, dict(self.tracker.before)
        )
        cell.uses = {**seen_now(tokens, around), **known}
        self._fill_wrote(cell, observed)

    def _fill_wrote(self, cell: CellResult | None, observed: Observed) -> None:
        """Add the paths the processes changed to what `cell` wrote (None: to the last
        cell this kernel run has): every path in the run's files is some cell's, the
        places its records may name (places.py)."""
        changed = {p for p, _ in observed.changed if p in self.tracker.after}
        if cell is None and changed and self.live:
            cell = self.live[max(self.live)]
        if cell is not None and changed:
            cell.wrote = sorted({*cell.wrote, *changed})
            self._live_wrote.update(changed)

    # -- records ------------------------------------------------------------------------

    def record_at(self, k: int, files: FileChanges) -> SnapshotRecord | None:
        """The record of a snapshot at pause k, after `step` gave the run's `files` (None:
        this run's files cannot be)."""
        if self.files_broken is not None or self.store.filled:
            return None
        cells = [self.live[i] for i in sorted(self.live) if i <= k]
        return SnapshotRecord(
            pause=k,
            key=self.keys.prefixes[k],
            lineage=list(self.lineage),
            modules=self._modules(cells),
            cells=[cell_to_meta(c) for c in cells],
            files=files,
            path=str(self.program.path),
            environment=self.keys.environment.parts(),
            values=list(self.program.instrumented.values),
        )

    def _modules(self, cells: list[CellResult]) -> dict[str, str]:
        """Local files the cells loaded: what require() reported at run time, and the
        relative specifiers of static and dynamic imports (ES modules load those
        without require.cache), with their content hashes."""
        paths: set[str] = set()
        for res in cells:
            paths.update(p for p in res.modules if _is_local(p))
            for dep in res.cell.dependencies:
                found = _resolve_local(self.project, dep.specifier)
                if found is not None:
                    paths.add(found)
        return {p: d for p in sorted(paths) if (d := file_hash(p)) is not None}

    def finish(self, result: RunResult) -> None:
        """Store the whole run's record, for an unchanged notebook's next run."""
        if result.timed_out or not self.nb.clean or self.store.filled:
            return
        modules = self._modules(result.cells)
        record = RunRecord.of(result, modules, self.tracker.changes(), self.files_broken)
        save_run(self.store, self.keys.full, record, self.program.path)


def put_files(
    store: Store,
    notebook: Path,
    target: FileChanges,
    digest: Callable[[str], str | None],
    wrote: Iterable[str],
) -> tuple[dict[str, str | None], str | None]:
    """Roll the paths the notebook wrote to `target`'s state ([starting, after] per
    path; `wrote`: the paths its cells were seen to write), and the others its last run
    wrote to their starting state; remember that as the last state. Returns the
    starting states, and a note when the last state's record was damaged (ignored)."""
    try:
        last, note = fstravel.load_last(store, notebook), None
    except DamagedRecord as err:
        last, note = {}, fstravel.ignored(err)
    starting = fstravel.starting_states(last, digest)
    for path, state in starting.items():
        # A state someone else left is kept, for a later rollback to it.
        if state is not None and fstravel.is_blob(state) and not store.has_blob(state):
            with contextlib.suppress(OSError):
                store.put_blob(Path(path).read_bytes())
    writes = fstravel.plan_rollback(target, last, starting, digest)
    fstravel.apply(writes, store.get_blob)
    unless_full(store, lambda: fstravel.save_last(store, notebook, target, wrote))
    return starting, note


def unless_full(store: Store, write: Callable[[], object]) -> None:
    """Write to the cache, unless its disk is full: then this run writes nothing more
    there (Store.filled) and goes on without snapshots; the last whole record stays."""
    if store.filled:
        return
    try:
        write()
    except (OSError, StoreError) as err:
        if not is_full_error(err):
            raise


def show_stored(
    store: Store, program: Program, record: RunRecord, sink: Sink, digest: Digests
) -> RunResult:
    """Show a stored run as if it ran now: its files put back, every cell restored,
    nothing executed."""
    started = time.monotonic()
    nb = program.notebook
    _, note = put_files(store, program.path, record.files, digest, wrote_of(record.cells))
    cells = record.cell_results(nb)
    by_index = {c.cell.index: c for c in cells}
    results = [
        by_index.get(c.index) or CellResult(c, status="not-run" if c.runs else "empty")
        for c in nb.cells
    ]
    for res in cells:
        show_finished(sink, res)
    tail = record.tail_result()
    show_output(sink, tail.stdout, tail.stderr)
    result = RunResult(nb, record.engine, results, tail, split=nb.clean)
    result.exit_code = record.exit_code
    result.signal = record.signal
    result.restored = len(cells)
    result.stored = True
    result.saved_seconds = record.seconds
    result.seconds = time.monotonic() - started
    result.notes.append("unchanged since the last run: stored outputs shown, nothing ran")
    if note is not None:
        result.notes.append(note)
    return result
