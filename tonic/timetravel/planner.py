"""Which snapshot a run resumes from, and what a snapshot records.

A snapshot is taken at pause k (after cell k). It is found by the key of prefix k
(keys.py) and reused only if, in this order:
  1. every local module that cells 1..k loaded still has the content it had;
  2. the notebook is byte-identical to the one version the process compiled (then the
     pause is answered with "go"), or the continuation check passes against every
     version in the snapshot's lineage (then it is answered with the edited suffix);
Otherwise the next shorter prefix is tried, and at last a fresh run. Each rejected
candidate's reason is kept, for `tonic why` and the notebook view.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tonic.engines.criu import tool as criu_tool
from tonic.kernel.driver import GO, Program, node_binary
from tonic.notebook.cells import Notebook, parse
from tonic.notebook.modkind import package_type
from tonic.results import CellResult, RunResult, Sink, Tail, show_finished, show_output
from tonic.store import SnapshotInfo, Store, StoreError, hot, ingest
from tonic.store.layout import RUNS, TMP
from tonic.timetravel import continuation, fstravel
from tonic.timetravel.keys import (
    Environment,
    base_key,
    file_hash,
    modules_still_valid,
    prefix_keys,
    sha256,
)

RUN_RECORD_VERSION = 1


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _unb64(text: object) -> bytearray:
    return bytearray(base64.b64decode(str(text)))


def cell_to_meta(result: CellResult) -> dict[str, object]:
    return {
        "index": result.cell.index,
        "status": result.status,
        "stdout": _b64(result.stdout),
        "stderr": _b64(result.stderr),
        "value": result.value,
        "error": result.error,
        "ms": result.ms,
        "modules": list(result.modules),
    }


def cell_from_meta(nb: Notebook, meta: dict[str, object]) -> CellResult:
    index = int(str(meta["index"]))
    ms = meta.get("ms")
    value, error = meta.get("value"), meta.get("error")
    modules = meta.get("modules")
    return CellResult(
        nb.cells[index - 1],
        status=str(meta["status"]),
        stdout=_unb64(meta["stdout"]),
        stderr=_unb64(meta["stderr"]),
        value=value if isinstance(value, str) else None,
        error=error if isinstance(error, str) else None,
        ms=float(ms) if isinstance(ms, int | float) else None,
        origin="restored",
        modules=[str(m) for m in modules] if isinstance(modules, list) else [],
    )


@dataclass
class SnapshotRecord:
    """What a snapshot at pause `pause` holds besides the memory images."""

    pause: int
    key: str
    lineage: list[str]  # blob ids of the file versions compiled into the process
    modules: dict[str, str]  # local module path -> sha256 when loaded
    cells: list[dict[str, object]]  # results of cells 1..pause
    pipes: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[str | None]] = field(default_factory=dict)  # rel -> [before, after]
    path: str = ""
    environment: dict[str, object] = field(default_factory=dict)
    engine: dict[str, str] = field(default_factory=dict)  # the engine's own (docker image)

    @property
    def snapshot_id(self) -> str:
        body = json.dumps([self.key, self.lineage, sorted(self.modules.items())])
        return sha256(body.encode())

    def meta(self) -> dict[str, object]:
        return {
            "pause": self.pause,
            "key": self.key,
            "lineage": self.lineage,
            "modules": self.modules,
            "cells": self.cells,
            "pipes": self.pipes,
            "files": self.files,
            "blobs": list(self.lineage)
            + sorted({b for pair in self.files.values() for b in pair if b is not None}),
            "path": self.path,
            "environment": self.environment,
            "engine": self.engine,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, object]) -> SnapshotRecord:
        return cls(
            pause=int(str(meta["pause"])),
            key=str(meta["key"]),
            lineage=[str(x) for x in meta["lineage"]],  # type: ignore[attr-defined]
            modules={str(k): str(v) for k, v in meta["modules"].items()},  # type: ignore[attr-defined]
            cells=list(meta["cells"]),  # type: ignore[call-overload]
            pipes={str(k): str(v) for k, v in meta["pipes"].items()},  # type: ignore[attr-defined]
            files={str(k): list(v) for k, v in (meta.get("files") or {}).items()},  # type: ignore[attr-defined]
            path=str(meta.get("path", "")),
            environment=dict(meta.get("environment") or {}),  # type: ignore[call-overload]
            engine={str(k): str(v) for k, v in (meta.get("engine") or {}).items()},  # type: ignore[attr-defined]
        )


@dataclass
class Choice:
    """The snapshot a run resumes from."""

    snapshot_id: str
    record: SnapshotRecord
    pause: int
    cells: tuple[CellResult, ...]
    command: dict[str, object]
    saved_seconds: float
    notes: list[str]


@dataclass(frozen=True)
class Verdict:
    """Why the prefix ending at a cell can or cannot be resumed."""

    cell: int
    reusable: bool
    reason: str


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


def _digest(data: bytes) -> str:
    """A blob's id, as the store computes it."""
    return sha256(data)


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


class Planner:
    """Keys, lookup and records of one run of one notebook with a snapshot engine."""

    def __init__(
        self,
        program: Program,
        *,
        engine: str,
        store: Store | None = None,
        files: bool = True,
        extra_key: dict[str, str] | None = None,
    ) -> None:
        """`files`: follow the notebook's writes to its project directory (fstravel.py;
        an engine that keeps files itself says False). `extra_key`: what else the
        engine's snapshots depend on (the docker engine: its image, the project's files)."""
        self.program = program
        self.nb = program.notebook
        self.store = store or Store()
        self.environment = Environment.current(
            node=node_binary(),
            engine=engine,
            path=program.path,
            args=program.args,
            inspect=program.inspect,
        )
        self.base = base_key(self.environment, self.nb)
        if extra_key:
            self.base = sha256(f"{self.base}:{json.dumps(extra_key, sort_keys=True)}".encode())
        self.track_files = files
        self.keys = prefix_keys(self.base, self.nb)
        self.full_key = sha256(f"{self.base}:run:{sha256(self.nb.data)}".encode())
        self.live: dict[int, CellResult] = {}
        self.lineage: list[str] = []
        self.verdicts: list[Verdict] = []
        self.notes: list[str] = []
        self.project = program.path.parent
        self.tracker = fstravel.Tracker(
            self.project,
            self.store.put_blob,
            self.store.get_blob,
            skip=frozenset({self.store.root}),
        )

    # -- locking and records of whole runs -------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self.store.lock(f"notebook:{self.program.path}"):
            yield

    def complete_run(self) -> dict[str, object] | None:
        """The stored record of a finished run of exactly this notebook, if still valid."""
        record = self.store.get_record(RUNS, self.full_key)
        if record is None or record.get("version") != RUN_RECORD_VERSION:
            return None
        if modules_still_valid(record.get("modules", {})) is not None:  # type: ignore[arg-type]
            return None
        files = record.get("files")
        if not isinstance(files, dict) or record.get("files_broken"):
            return None
        return dict(record)

    def replay_stored(self, record: dict[str, object], sink: Sink) -> RunResult:
        """Show a stored run as if it ran now: every cell restored, nothing executed."""
        started = time.monotonic()
        self._put_files({str(k): list(v) for k, v in record["files"].items()})  # type: ignore[attr-defined]
        cells = [cell_from_meta(self.nb, c) for c in record["cells"]]  # type: ignore[attr-defined]
        by_index = {c.cell.index: c for c in cells}
        results = [
            by_index.get(c.index) or CellResult(c, status="not-run" if c.runs else "empty")
            for c in self.nb.cells
        ]
        for res in cells:
            show_finished(sink, res)
        tail_meta = record["tail"]
        assert isinstance(tail_meta, dict)
        tail = Tail(_unb64(tail_meta["stdout"]), _unb64(tail_meta["stderr"]), tail_meta["error"])
        show_output(sink, tail.stdout, tail.stderr)
        result = RunResult(self.nb, str(record["engine"]), results, tail, split=self.nb.clean)
        result.exit_code = int(str(record["exit_code"]))
        sig = record.get("signal")
        result.signal = int(str(sig)) if sig is not None else None
        result.restored = len(cells)
        result.saved_seconds = float(str(record.get("seconds", 0.0)))
        result.seconds = time.monotonic() - started
        result.notes.append("unchanged since the last run: stored outputs shown, nothing ran")
        return result

    def finish(self, result: RunResult) -> None:
        """Store the whole run's record, for an unchanged notebook's next run."""
        if result.timed_out or not self.nb.clean:
            return
        modules = self._modules(result.cells)
        files = {p: [self.tracker.before.get(p), b] for p, b in self.tracker.after.items()}
        record = {
            "version": RUN_RECORD_VERSION,
            "engine": result.engine,
            "cells": [
                cell_to_meta(c) for c in result.cells if c.status not in ("not-run", "empty")
            ],
            "tail": {
                "stdout": _b64(result.tail.stdout),
                "stderr": _b64(result.tail.stderr),
                "error": result.tail.error,
            },
            "exit_code": result.exit_code,
            "signal": result.signal,
            "seconds": sum(c.ms or 0.0 for c in result.cells) / 1000.0,
            "modules": modules,
            "files": files,
            "files_broken": self.tracker.broken,
        }
        blobs = {b for pair in files.values() for b in pair if b is not None}
        with contextlib.suppress(OSError, StoreError):
            self.store.put_record(RUNS, self.full_key, record, blobs=blobs)

    # -- choosing a snapshot ------------------------------------------------------------

    def _version(self, blob: str) -> Notebook:
        data = self.store.get_blob(blob)
        ptype, _ = package_type(self.program.path)
        return parse(data, filename=self.program.path.name, package_type=ptype)

    def _judge(self, k: int, record: SnapshotRecord) -> tuple[str | None, dict[str, object]]:
        """(None, command) when the snapshot can continue this notebook; else (reason, {})."""
        changed = modules_still_valid(record.modules)
        if changed is not None:
            return f"{changed} changed since cells 1-{k} loaded it", {}
        try:
            versions = [self._version(b) for b in record.lineage]
        except (StoreError, OSError) as err:
            return f"its file versions are unreadable ({err})", {}
        if versions and versions[-1].data == self.nb.data:
            # The process runs exactly this file's code from here on.
            return None, dict(GO)
        reason = continuation.check(versions, self.nb, k)
        if reason is not None:
            return reason, {}
        keep = continuation.keep_functions(versions, self.nb, k)
        source = continuation.suffix_source(
            self.nb,
            k,
            file=str(self.program.path),
            values=bool(self.program.instrumented.values),
            keep=keep,
        )
        values = list(self.program.instrumented.values)
        # `check`: the kernel compiles the new file first, as node's loader would, so an
        # early error stops the run before anything of the rest runs.
        text = self.nb.data.decode("utf-8")
        return None, {"op": "eval", "source": source, "values": values, "check": text}

    def judge_all(self) -> list[Verdict]:
        """Every prefix's verdict, longest first (stops at the first reusable one)."""
        with ingest.settled(self.store.root, self.program.path):
            return self._judge_all()

    def _judge_all(self) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for k, reasons, found in self._prefixes():
            if found is not None:
                verdicts.append(Verdict(k, True, "reusable"))
                return verdicts
            verdicts.append(
                Verdict(k, False, reasons[0] if reasons else "no snapshot of this prefix")
            )
        return verdicts

    def _prefixes(
        self,
    ) -> Iterator[
        tuple[int, list[str], tuple[SnapshotInfo, SnapshotRecord, dict[str, object]] | None]
    ]:
        """Longest prefix first: (cell, why each snapshot of it cannot be used, the first
        that can: info, record and the command answering its pause). Stops at that one."""
        for k in sorted(self.keys, reverse=True):
            reasons: list[str] = []
            for info in self.store.find(self.keys[k]):
                record = SnapshotRecord.from_meta(info.meta)
                reason, command = self._judge(k, record)
                if reason is None:
                    yield k, reasons, (info, record, command)
                    return
                reasons.append(reason)
            yield k, reasons, None

    def choose(self) -> Choice | None:
        with ingest.settled(self.store.root, self.program.path):
            return self._choose()

    def _choose(self) -> Choice | None:
        if not self.nb.clean or not self.program.instrumented.pauses:
            self.fresh()
            return None
        for k, reasons, found in self._prefixes():
            self.verdicts.extend(Verdict(k, False, r) for r in reasons)
            if found is None:
                continue
            info, record, command = found
            cells = tuple(cell_from_meta(self.nb, c) for c in record.cells)
            if command.get("op") == "eval":
                self.lineage = [*record.lineage, self.store.put_blob(self.nb.data)]
            else:
                self.lineage = list(record.lineage)
            saved = sum(c.ms or 0.0 for c in cells) / 1000.0
            notes = [f"restored cells 1-{k} from a snapshot"]
            return Choice(info.id, record, k, cells, command, saved, notes)
        self.fresh()
        return None

    def fresh(self) -> None:
        """Give up on snapshots for this run: it starts from cell 1."""
        self.live.clear()
        self.lineage = [self.store.put_blob(self.nb.data)]

    def staging(self) -> str:
        """Where CRIU images are written before they enter the store (same filesystem)."""
        tmp = self.store.root / TMP
        tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        return str(tmp)

    # -- files --------------------------------------------------------------------------

    def prepare_files(self, choice: Choice | None) -> None:
        """Put the notebook's files into the state of the chosen snapshot (or of before
        the notebook ran), then follow this run's writes."""
        if not self.track_files:
            return
        target = choice.record.files if choice is not None else {}
        self._put_files(target)
        self.tracker.start(
            before={p: pair[0] for p, pair in target.items()},
            after={p: pair[1] for p, pair in target.items()},
            known=fstravel.load_stats(self.store.root, self.program.path, self.store.has_blob),
        )

    def _put_files(self, target: dict[str, list[str | None]]) -> None:
        """Roll the notebook's files to `target` ([before, after] per path), refusing to
        touch a file edited by hand, and remember that state as the last one."""
        last = fstravel.load_last(self.store.root, self.program.path)
        writes = fstravel.plan_rollback(self.project, target, last, _digest)
        fstravel.apply(self.project, writes, self.store.get_blob)
        fstravel.save_last(self.store.root, self.program.path, target)

    @property
    def files_broken(self) -> str | None:
        return self.tracker.broken

    def files_step(self) -> dict[str, list[str | None]]:
        if not self.track_files:
            return {}
        self.tracker.step()
        files = {p: [self.tracker.before.get(p), b] for p, b in self.tracker.after.items()}
        fstravel.save_last(self.store.root, self.program.path, files)
        return files

    def files_done(self) -> None:
        self.files_step()
        if self.track_files and self.tracker.broken is None:
            fstravel.save_stats(self.store.root, self.program.path, self.tracker.stats())

    def restore(
        self, choice: Choice, criu: criu_tool.Criu, inherit: dict[int, str]
    ) -> tuple[int, float]:
        started = time.monotonic()
        with self.images(choice) as (images, work):
            pid, _ = criu_tool.restore(criu, images, inherit, work)
        return pid, time.monotonic() - started

    @contextlib.contextmanager
    def images(self, choice: Choice) -> Iterator[tuple[Path, Path]]:
        """(the snapshot's image files, a private scratch folder): kept unpacked (hot.py)
        or recreated from the store in the scratch folder. Not to be written to."""
        work = Path(tempfile.mkdtemp(prefix="tonic-restore-", dir=self.staging()))
        try:
            os.chmod(work, 0o700)
            images = hot.lookup(self.store.root, choice.snapshot_id)
            if images is None:
                images = work / "images"
                try:
                    self.store.materialize(choice.snapshot_id, images)
                except StoreError:
                    self.store.remove(choice.snapshot_id)
                    raise
            yield images, work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- taking snapshots ---------------------------------------------------------------

    def watch(self, sink: Sink) -> _Watch:
        return _Watch(sink, self.live)

    @property
    def live_cells(self) -> list[CellResult]:
        return [self.live[i] for i in sorted(self.live)]

    def record_at(self, k: int) -> SnapshotRecord | None:
        files = self.files_step()
        if self.tracker.broken is not None:
            return None
        cells = [self.live[i] for i in sorted(self.live) if i <= k]
        modules = self._modules(cells)
        return SnapshotRecord(
            pause=k,
            key=self.keys[k],
            lineage=list(self.lineage),
            modules=modules,
            cells=[cell_to_meta(c) for c in cells],
            files=files,
            path=str(self.program.path),
            environment=self.environment.parts(),
        )

    def _modules(self, cells: list[CellResult]) -> dict[str, str]:
        """Local files the cells loaded: what require() reported at run time, and the
        relative specifiers of static and dynamic imports (ES modules load those
        without require.cache), with their content hashes."""
        paths: set[str] = set()
        for res in cells:
            paths.update(p for p in res.modules if _is_local(p))
            for dep in res.cell.dependencies:
                found = _resolve_local(self.program.path.parent, dep.specifier)
                if found is not None:
                    paths.add(found)
        return {p: d for p in sorted(paths) if (d := file_hash(p)) is not None}

    def publish(self, record: SnapshotRecord, images: Path) -> None:
        self.store.ingest(record.snapshot_id, record.key, images, record.meta())
