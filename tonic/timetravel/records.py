"""What the store keeps of a notebook besides memory images: a record per snapshot (the
cells before it, the file versions its process compiled, the modules and files it
depends on) and a record per finished run (shown again, as is, for an unchanged
notebook). Each format has a version number; a record of another version is not used.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass, field

from tonic.notebook.cells import Notebook
from tonic.results import CellResult, RunResult, Tail
from tonic.store import RUNS, Store, StoreError
from tonic.timetravel.fstravel import blobs_of
from tonic.timetravel.keys import sha256

SNAPSHOT_RECORD_VERSION = 2  # a snapshot's meta without "version" is of version 1
RUN_RECORD_VERSION = 2


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
    }


def cell_from_meta(nb: Notebook, meta: dict[str, object]) -> CellResult:
    index = int(str(meta["index"]))
    ms = meta.get("ms")
    value, error = meta.get("value"), meta.get("error")
    modules = meta.get("modules")
    uses = meta.get("uses")
    wrote = meta.get("wrote")
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
        # What it was made from: a run in other surroundings makes another snapshot.
        uses = [c.get("uses") for c in self.cells]
        body = json.dumps(
            [self.key, self.lineage, sorted(self.modules.items()), uses, self.files, self.values],
            sort_keys=True,
        )
        return sha256(body.encode())

    def meta(self) -> dict[str, object]:
        return {
            "version": SNAPSHOT_RECORD_VERSION,
            "pause": self.pause,
            "key": self.key,
            "lineage": self.lineage,
            "modules": self.modules,
            "cells": self.cells,
            "pipes": self.pipes,
            "files": self.files,
            "blobs": list(self.lineage) + blobs_of(self.files),
            "path": self.path,
            "environment": self.environment,
            "engine": self.engine,
            "values": self.values,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, object]) -> SnapshotRecord | None:
        """The record in a snapshot's meta; None for another version's."""
        if meta.get("version", SNAPSHOT_RECORD_VERSION) != SNAPSHOT_RECORD_VERSION:
            return None
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
            values=[int(str(v)) for v in meta.get("values") or []],  # type: ignore[attr-defined]
        )


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

    def to_json(self) -> dict[str, object]:
        return {
            "version": RUN_RECORD_VERSION,
            "engine": self.engine,
            "cells": self.cells,
            "tail": self.tail,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "seconds": self.seconds,
            "modules": self.modules,
            "files": self.files,
            "files_broken": self.files_broken,
        }

    @classmethod
    def from_json(cls, doc: object) -> RunRecord | None:
        """The record, or None when it is of another version or malformed."""
        if not isinstance(doc, dict) or doc.get("version") != RUN_RECORD_VERSION:
            return None
        try:
            sig = doc.get("signal")
            return cls(
                engine=str(doc["engine"]),
                cells=list(doc["cells"]),
                tail=dict(doc["tail"]),
                exit_code=int(str(doc["exit_code"])),
                signal=int(str(sig)) if sig is not None else None,
                seconds=float(str(doc.get("seconds", 0.0))),
                modules={str(k): str(v) for k, v in (doc.get("modules") or {}).items()},
                files={str(k): list(v) for k, v in doc["files"].items()},
                files_broken=doc.get("files_broken") or None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def cell_results(self, nb: Notebook) -> list[CellResult]:
        return [cell_from_meta(nb, c) for c in self.cells]

    def tail_result(self) -> Tail:
        return Tail(
            _unb64(self.tail["stdout"]),
            _unb64(self.tail["stderr"]),
            self.tail["error"] if isinstance(self.tail.get("error"), str) else None,  # type: ignore[arg-type]
        )


def load_run(store: Store, full_key: str) -> RunRecord | None:
    """The stored record of the run whose key is `full_key`, if any (and readable)."""
    return RunRecord.from_json(store.get_record(RUNS, full_key))


def save_run(store: Store, full_key: str, record: RunRecord) -> None:
    """Store the record atomically (best effort: the next run just runs again)."""
    with contextlib.suppress(OSError, StoreError):
        store.put_record(RUNS, full_key, record.to_json(), blobs=record.blobs)
