"""The record of one kernel run as it happens: each cell as it finishes, a snapshot
record at each pause, the files the run changed (fstravel.py); at the end, the record
of the whole run, for an unchanged notebook's next run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tonic.kernel.driver import Program
from tonic.results import CellResult, RunResult, Sink, show_finished, show_output
from tonic.store import Store
from tonic.timetravel import fstravel
from tonic.timetravel.choose import Choice
from tonic.timetravel.keys import NotebookKeys, file_hash, sha256
from tonic.timetravel.records import (
    FileChanges,
    RunRecord,
    SnapshotRecord,
    cell_to_meta,
    save_run,
)


class _Watch:
    """Passes everything to the real sink, keeping each finished cell's record."""

    def __init__(self, sink: Sink, done: dict[int, CellResult]) -> None:
        self.sink = sink
        self.done = done

    def output(self, stream: int, data: bytes) -> None:
        self.sink.output(stream, data)

    def cell_started(self, result: CellResult) -> None:
        self.sink.cell_started(result)

    def cell_done(self, result: CellResult) -> None:
        self.done[result.cell.index] = result
        self.sink.cell_done(result)


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


class Recorder:
    """One kernel run of `program`, fresh or resumed from `choice`. `files`: follow the
    notebook's writes to its project folder (an engine that keeps files itself says
    False)."""

    def __init__(
        self,
        program: Program,
        store: Store,
        keys: NotebookKeys,
        choice: Choice | None,
        *,
        files: bool = True,
    ) -> None:
        self.program = program
        self.nb = program.notebook
        self.store = store
        self.keys = keys
        self.choice = choice
        self.track_files = files
        self.live: dict[int, CellResult] = {}  # cells that finished in this kernel run
        self.notes: list[str] = []
        if choice is None or choice.continued:
            self.store.put_blob(self.nb.data)  # the version this run compiles
        self.lineage = choice.lineage if choice is not None else [sha256(self.nb.data)]
        self.project = program.path.parent
        self.tracker = fstravel.Tracker(
            self.project, store.put_blob, store.get_blob, skip=frozenset({store.root})
        )

    def watch(self, sink: Sink) -> _Watch:
        return _Watch(sink, self.live)

    def cell_ms(self, k: int) -> float:
        """How long cell k ran in this kernel run (0 for one that did not)."""
        cell = self.live.get(k)
        return (cell.ms or 0.0) if cell is not None else 0.0

    # -- files --------------------------------------------------------------------------

    def prepare_files(self) -> None:
        """Put the notebook's files into the state of the chosen snapshot (or of before
        the notebook ran), then follow this run's writes."""
        if not self.track_files:
            return
        target = self.choice.record.files if self.choice is not None else {}
        put_files(self.store, self.program.path, target)
        self.tracker.start(
            before={p: pair[0] for p, pair in target.items()},
            after={p: pair[1] for p, pair in target.items()},
            known=fstravel.load_stats(self.store, self.program.path, self.store.has_blob),
        )

    @property
    def files_broken(self) -> str | None:
        return self.tracker.broken if self.track_files else None

    def _files_step(self) -> FileChanges:
        if not self.track_files:
            return {}
        self.tracker.step()
        files = self.tracker.changes()
        fstravel.save_last(self.store, self.program.path, files)
        return files

    def files_done(self) -> None:
        self._files_step()
        if self.track_files and self.tracker.broken is None:
            fstravel.save_stats(self.store, self.program.path, self.tracker.stats())

    # -- records ------------------------------------------------------------------------

    def record_at(self, k: int) -> SnapshotRecord | None:
        """The record of a snapshot at pause k (None: this run's files cannot be)."""
        files = self._files_step()
        if self.tracker.broken is not None:
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
        if result.timed_out or not self.nb.clean:
            return
        modules = self._modules(result.cells)
        record = RunRecord.of(result, modules, self.tracker.changes(), self.tracker.broken)
        save_run(self.store, self.keys.full, record)


def put_files(store: Store, notebook: Path, target: FileChanges) -> None:
    """Roll the notebook's files to `target` ([before, after] per path), refusing to
    touch a file edited by hand, and remember that state as the last one."""
    last = fstravel.load_last(store, notebook)
    writes = fstravel.plan_rollback(notebook.parent, target, last, sha256)
    fstravel.apply(notebook.parent, writes, store.get_blob)
    fstravel.save_last(store, notebook, target)


def show_stored(store: Store, program: Program, record: RunRecord, sink: Sink) -> RunResult:
    """Show a stored run as if it ran now: its files put back, every cell restored,
    nothing executed."""
    started = time.monotonic()
    nb = program.notebook
    put_files(store, program.path, record.files)
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
    result.saved_seconds = record.seconds
    result.seconds = time.monotonic() - started
    result.notes.append("unchanged since the last run: stored outputs shown, nothing ran")
    return result
