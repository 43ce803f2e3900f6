"""What the store keeps of a notebook besides memory images: a record per snapshot (the
cells before it, the file versions its process compiled, the modules and files it
depends on) and a record per finished run (shown again, as is, for an unchanged
notebook). Each format has a version number; a record of another version is not used.
Both are sealed (store/records.py: a checksum beside the body) and may name only the
places the notebook may write (places.py); a reader gets DamagedRecord for one that
fails a check, and ignores it.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tonic.notebook.cells import Notebook
from tonic.results import CellResult, RunResult, Tail
from tonic.store import RUNS, DamagedRecord, Store, StoreError, seal, unseal
from tonic.timetravel.fstravel import blobs_of, kept
from tonic.timetravel.keys import sha256
from tonic.timetravel.places import Places, project_of, stored, wrote_of

# 3: the files' paths in the project relative to it, sealed (a meta without "version"
# is of version 1)
SNAPSHOT_RECORD_VERSION = 3
RUN_RECORD_VERSION = 3  # 3: as snapshot records' 3
ANOTHER_VERSION = "it was made by another version of tonic"


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
        "uses": result.uses,
        "wrote": list(result.wrote),
        **({"mime": dict(result.mime)} if result.mime else {}),
    }


def check_cells(cells: object, last: int) -> list[dict[str, object]]:
    """A record's cells, each of cells 1..`last` at most once with its output;
    DamagedRecord when they are not."""
    if not isinstance(cells, list):
        raise DamagedRecord("its cells are not a list")
    seen: set[int] = set()
    for meta in cells:
        index = meta.get("index") if isinstance(meta, dict) else None
        if not isinstance(index, int) or not 1 <= index <= last or index in seen:
            raise DamagedRecord("its cells are not the notebook's")
        seen.add(index)
        try:
            for name in ("stdout", "stderr"):
                _unb64(meta[name])
            if not isinstance(meta["status"], str):
                raise ValueError("status")
        except (KeyError, ValueError):
            raise DamagedRecord(f"the output of its cell {index} is damaged") from None
    return cells


def cell_from_meta(nb: Notebook, meta: dict[str, object]) -> CellResult:
    index = int(str(meta["index"]))
    ms = meta.get("ms")
    value, error = meta.get("value"), meta.get("error")
    modules = meta.get("modules")
    uses = meta.get("uses")
    wrote = meta.get("wrote")
    mime = meta.get("mime")
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
        uses={str(k): None if v is None else str(v) for k, v in uses.items()}
        if isinstance(uses, dict)
        else {},
        wrote=[str(w) for w in wrote] if isinstance(wrote, list) else [],
        mime={str(k): v for k, v in mime.items() if isinstance(v, str)}
        if isinstance(mime, dict)
        else {},
    )


def cell_uses(cells: list[dict[str, object]]) -> list[tuple[int, dict[str, str | None]]]:
    """(cell index, its uses) of each recorded cell (timetravel/deps.py)."""
    found = []
    for meta in cells:
        uses = meta.get("uses")
        if isinstance(uses, dict):
            found.append((int(str(meta["index"])), {str(k): v for k, v in uses.items()}))
    return found


# absolute path -> [its starting state, its state after] (timetravel/fstravel.py)
FileChanges = dict[str, list[str | None]]


@dataclass
class SnapshotRecord:
    """What a snapshot at pause `pause` holds besides the memory images."""

    pause: int
    key: str
    lineage: list[str]  # blob ids of the file versions compiled into the process
    modules: dict[str, str]  # local module path -> sha256 when loaded
    cells: list[dict[str, object]]  # results of cells 1..pause
    pipes: dict[str, str] = field(default_factory=dict)
    files: FileChanges = field(default_factory=dict)
    path: str = ""
    environment: dict[str, object] = field(default_factory=dict)
    engine: dict[str, str] = field(default_factory=dict)  # the engine's own (docker image)
    values: list[int] = field(default_factory=list)  # the cells compiled with value captures

    @property
    def snapshot_id(self) -> str:
        # What it was made from: a run in other surroundings makes another snapshot, and
        # so does a tonic of another record format (the first snapshot of an id wins).
        uses = [c.get("uses") for c in self.cells]
        made = [self.key, self.lineage, sorted(self.modules.items()), uses, self.files]
        body = json.dumps([SNAPSHOT_RECORD_VERSION, *made, self.values], sort_keys=True)
        return sha256(body.encode())

    def meta(self) -> dict[str, object]:
        """The record as the snapshot's meta stores it (sealed)."""
        project = project_of(Path(self.path))
        return seal(
            {
                "version": SNAPSHOT_RECORD_VERSION,
                "pause": self.pause,
                "key": self.key,
                "lineage": self.lineage,
                "modules": self.modules,
                "cells": self.cells,
                "pipes": self.pipes,
                "files": stored(self.files, project),
                "blobs": list(self.lineage) + blobs_of(self.files),
                "path": self.path,
                "environment": self.environment,
                "engine": self.engine,
                "values": self.values,
            }
        )

    @classmethod
    def from_meta(cls, meta: dict[str, object], places: Places) -> SnapshotRecord:
        """The record in a snapshot's meta; DamagedRecord for another version's, a
        damaged one, or one that names a place the notebook may not write."""
        if meta.get("version", 1) != SNAPSHOT_RECORD_VERSION:
            raise DamagedRecord(ANOTHER_VERSION)
        body = unseal(meta)
        try:
            pause = int(str(body["pause"]))
            cells = check_cells(body["cells"], pause)
            return cls(
                pause=pause,
                key=str(body["key"]),
                lineage=[str(x) for x in body["lineage"]],  # type: ignore[attr-defined]
                modules={str(k): str(v) for k, v in body["modules"].items()},  # type: ignore[attr-defined]
                cells=cells,
                pipes={str(k): str(v) for k, v in body["pipes"].items()},  # type: ignore[attr-defined]
                files=places.files(body.get("files") or {}, wrote_of(cells)),
                path=str(body.get("path", "")),
                environment=dict(body.get("environment") or {}),  # type: ignore[call-overload]
                engine={str(k): str(v) for k, v in (body.get("engine") or {}).items()},  # type: ignore[attr-defined]
                values=[int(str(v)) for v in body.get("values") or []],  # type: ignore[attr-defined]
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DamagedRecord("its fields are not a snapshot record's") from None


@dataclass
class RunRecord:
    """A finished run of one exact notebook, with what it depended on."""

    engine: str
    cells: list[dict[str, object]]  # the cells that ran (not the empty or not-run ones)
    tail: dict[str, object]  # output after the last cell, and its error
    exit_code: int
    signal: int | None
    seconds: float  # the cells' run time
    modules: dict[str, str]  # local module path -> sha256
    files: FileChanges
    files_broken: str | None

    @classmethod
    def of(
        cls, result: RunResult, modules: dict[str, str], files: FileChanges, broken: str | None
    ) -> RunRecord:
        return cls(
            engine=result.engine,
            cells=[cell_to_meta(c) for c in result.cells if c.status not in ("not-run", "empty")],
            tail={
                "stdout": _b64(result.tail.stdout),
                "stderr": _b64(result.tail.stderr),
                "error": result.tail.error,
            },
            exit_code=result.exit_code,
            signal=result.signal,
            seconds=sum(c.ms or 0.0 for c in result.cells) / 1000.0,
            modules=modules,
            files=files,
            files_broken=broken,
        )

    @property
    def blobs(self) -> list[str]:
        """The store objects this record needs: the files' contents before and after."""
        return blobs_of(self.files)

    def to_json(self, project: Path) -> dict[str, object]:
        """The record as stored: the paths in `project` relative to it."""
        return {
            "version": RUN_RECORD_VERSION,
            "engine": self.engine,
            "cells": self.cells,
            "tail": self.tail,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "seconds": self.seconds,
            "modules": self.modules,
            "files": stored(self.files, project),
            "files_broken": self.files_broken,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object], places: Places, last: int) -> RunRecord:
        """The record of a run of a notebook of `last` cells; DamagedRecord when it is
        of another version, malformed, or names a place the notebook may not write."""
        if doc.get("version") != RUN_RECORD_VERSION:
            raise DamagedRecord(ANOTHER_VERSION)
        try:
            sig = doc.get("signal")
            cells = check_cells(doc["cells"], last)
            return cls(
                engine=str(doc["engine"]),
                cells=cells,
                tail=dict(doc["tail"]),  # type: ignore[call-overload]
                exit_code=int(str(doc["exit_code"])),
                signal=int(str(sig)) if sig is not None else None,
                seconds=float(str(doc.get("seconds", 0.0))),
                modules={str(k): str(v) for k, v in (doc.get("modules") or {}).items()},  # type: ignore[attr-defined]
                files=places.files(doc["files"], wrote_of(cells)),
                files_broken=str(doc.get("files_broken") or "") or None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DamagedRecord("its fields are not a run record's") from None

    def cell_results(self, nb: Notebook) -> list[CellResult]:
        return [cell_from_meta(nb, c) for c in self.cells]

    def tail_result(self) -> Tail:
        return Tail(
            _unb64(self.tail["stdout"]),
            _unb64(self.tail["stderr"]),
            self.tail["error"] if isinstance(self.tail.get("error"), str) else None,  # type: ignore[arg-type]
        )


def load_run(store: Store, full_key: str, notebook: Path, last: int) -> RunRecord | None:
    """The stored record of the run whose key is `full_key` (of a notebook of `last`
    cells), if any; DamagedRecord when it cannot be used (RunRecord.from_json)."""
    doc = store.get_record(RUNS, full_key)
    if doc is None:
        return None
    record = RunRecord.from_json(doc, Places.of(notebook, store.root), last)
    kept(store, record.files)
    return record


def save_run(store: Store, full_key: str, record: RunRecord, notebook: Path) -> None:
    """Store the record atomically (best effort: the next run just runs again)."""
    doc = record.to_json(Places.of(notebook, store.root).project)
    with contextlib.suppress(OSError, StoreError):
        store.put_record(RUNS, full_key, doc, blobs=record.blobs)
