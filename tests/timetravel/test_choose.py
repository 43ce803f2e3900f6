"""Choosing a snapshot, without node: a store holding records (and empty images) of
earlier runs, and the verdicts on each prefix of an edited notebook."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tonic.kernel.driver import Program
from tonic.kernel.protocol import GO, Eval
from tonic.notebook.cells import parse
from tonic.notebook.instrument import instrument
from tonic.store import RUNS, Store, seal
from tonic.timetravel import records
from tonic.timetravel.choose import Chooser
from tonic.timetravel.keys import Environment, NotebookKeys, file_hash, sha256
from tonic.timetravel.records import RunRecord, SnapshotRecord, save_run

V1 = b"const a = 1;\n\nconst b = a + 1;\n\nconsole.log(a + b);\n"
V2 = b"const a = 1;\n\nconst b = a + 1;\n\nconsole.log(a * b);\n"  # last cell edited
V3 = b"const a = 2;\n\nconst b = a + 1;\n\nconsole.log(a + b);\n"  # first cell edited


def environment(path: Path) -> Environment:
    return Environment(
        node="node-test",
        engine="criu",
        path=str(path),
        args=(),
        env=(("HOME", "/root"),),
        packages="none",
        inspect=True,
    )


def program(path: Path, data: bytes) -> Program:
    path.write_bytes(data)
    nb = parse(data, filename=path.name)
    return Program(notebook=nb, path=path, instrumented=instrument(nb, values=True))


def snapshot(
    store: Store, tmp: Path, prog: Program, pause: int, modules: dict[str, str] | None = None
) -> str:
    """Store a snapshot of `prog` at `pause` as a run of it would (with one image file)."""
    keys = NotebookKeys.of(environment(prog.path), prog.notebook)
    record = SnapshotRecord(
        pause=pause,
        key=keys.prefixes[pause],
        lineage=[store.put_blob(prog.notebook.data)],
        modules=modules or {},
        cells=[],
        path=str(prog.path),
        environment=keys.environment.parts(),
        values=list(prog.instrumented.values),
    )
    images = tmp / f"images-{pause}-{len(os.listdir(tmp))}"
    images.mkdir()
    (images / "core.img").write_bytes(b"memory")
    store.ingest(record.snapshot_id, record.key, images, record.meta())
    return record.snapshot_id


def chooser(store: Store, prog: Program) -> Chooser:
    return Chooser(prog, store, NotebookKeys.of(environment(prog.path), prog.notebook))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Store, Path, Path]:
    store = Store(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    return store, work, project / "nb.js"


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file of the store but its lock files (choosing waits for ingest workers)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != "locks"
    }


def test_nothing_stored_runs_afresh(setup: tuple[Store, Path, Path]) -> None:
    store, _, path = setup
    prog = program(path, V1)
    choice, verdicts = chooser(store, prog).choose()
    assert choice is None and verdicts == []
    assert [(v.cell, v.reusable, v.reason) for v in chooser(store, prog).verdicts()] == [
        (3, False, "no snapshot of this prefix"),
        (2, False, "no snapshot of this prefix"),
        (1, False, "no snapshot of this prefix"),
    ]


def test_unchanged_notebook_goes_on_from_the_longest_prefix(
    setup: tuple[Store, Path, Path],
) -> None:
    store, work, path = setup
    prog = program(path, V1)
    snapshot(store, work, prog, 1)
    wanted = snapshot(store, work, prog, 2)
    choice, verdicts = chooser(store, prog).choose()
    assert choice is not None and choice.snapshot_id == wanted
    assert choice.pause == 2 and choice.command == GO and not choice.continued
    assert choice.lineage == [sha256(V1)]
    assert verdicts == []


@pytest.mark.parametrize(
    ("edited", "pause", "continued"),
    [
        (V2, 2, True),  # the last cell changed: cells 1-2 go on with the edited rest
        (V3, None, False),  # the first cell changed: no prefix is left
    ],
)
def test_edited_notebook(
    setup: tuple[Store, Path, Path], edited: bytes, pause: int | None, continued: bool
) -> None:
    store, work, path = setup
    old = program(path, V1)
    for k in (1, 2):
        snapshot(store, work, old, k)
    new = program(path, edited)
    before = tree(store.root)
    choice, _ = chooser(store, new).choose()
    assert tree(store.root) == before, "choosing wrote to the store"
    if pause is None:
        assert choice is None
        return
    assert choice is not None and choice.pause == pause and choice.continued == continued
    assert isinstance(choice.command, Eval) and choice.command.check == edited.decode()
    assert choice.lineage == [sha256(V1), sha256(edited)]


def test_changed_module_and_unreadable_versions(setup: tuple[Store, Path, Path]) -> None:
    store, work, path = setup
    module = path.parent / "lib.js"
    module.write_text("module.exports = 1;\n")
    prog = program(path, V1)
    digest = file_hash(str(module))
    assert digest is not None
    snapshot(store, work, prog, 2, modules={str(module): digest})
    module.write_text("module.exports = 2;\n")
    verdicts = chooser(store, prog).verdicts()
    assert verdicts[1].cell == 2 and verdicts[1].reason == (
        f"{module} changed since cells 1-2 loaded it"
    )
    module.write_text("module.exports = 1;\n")
    store.gc(blob_grace=0)  # the snapshot names its file versions: gc keeps them
    assert chooser(store, prog).verdicts()[1].reusable


def test_another_versions_record_is_not_used(setup: tuple[Store, Path, Path]) -> None:
    store, work, path = setup
    prog = program(path, V1)
    keys = NotebookKeys.of(environment(prog.path), prog.notebook)
    record = SnapshotRecord(1, keys.prefixes[1], [store.put_blob(V1)], {}, [])
    images = work / "img"
    images.mkdir()
    (images / "core.img").write_bytes(b"x")
    store.ingest(record.snapshot_id, record.key, images, {**record.meta(), "version": 99})
    verdicts = chooser(store, prog).verdicts()
    assert verdicts[-1].reason == "it was made by another version of tonic"


def test_stored_run(setup: tuple[Store, Path, Path]) -> None:
    store, _, path = setup
    prog = program(path, V1)
    keys = NotebookKeys.of(environment(prog.path), prog.notebook)
    record = RunRecord(
        "criu", [], {"stdout": "", "stderr": "", "error": None}, 0, None, 0.1, {}, {}, None
    )
    save_run(store, keys.full, record, prog.path)
    assert chooser(store, prog).stored_run() == record
    broken = RunRecord("criu", [], record.tail, 0, None, 0.1, {}, {}, "too many files")
    save_run(store, keys.full, broken, prog.path)
    assert chooser(store, prog).stored_run() is None
    assert chooser(store, program(path, V2)).stored_run() is None  # another text


def test_another_format_makes_another_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot id is of one record format: an older tonic's snapshot of the same run
    (which this tonic does not use) cannot keep this one's out (the first id wins)."""
    record = SnapshotRecord(1, "key", [sha256(V1)], {}, [])
    ours = record.snapshot_id
    monkeypatch.setattr(records, "SNAPSHOT_RECORD_VERSION", 2)
    assert record.snapshot_id != ours


def test_a_damaged_snapshot_record_falls_back_to_an_earlier_one(
    setup: tuple[Store, Path, Path],
) -> None:
    """The snapshot after cell 2 names a file its cells were not seen to write: the one
    after cell 1 is chosen, with a note, and the damaged one's id is kept for removal."""
    store, work, path = setup
    prog = program(path, V1)
    earlier = snapshot(store, work, prog, 1)
    keys = NotebookKeys.of(environment(prog.path), prog.notebook)
    record = SnapshotRecord(
        pause=2,
        key=keys.prefixes[2],
        lineage=[store.put_blob(prog.notebook.data)],
        modules={},
        cells=[],
        path=str(prog.path),
        environment=keys.environment.parts(),
        values=list(prog.instrumented.values),
    )
    victim = str(path.parent.parent / "victim.txt")
    body = {**record.meta(), "files": {victim: [None, sha256(b"x")]}}
    body.pop("blake2b")
    images = work / "crafted"
    images.mkdir()
    (images / "core.img").write_bytes(b"memory")
    store.ingest(record.snapshot_id, record.key, images, seal(body))  # its checksum fits
    chosen = chooser(store, prog)
    choice, verdicts = chosen.choose()
    assert choice is not None and choice.snapshot_id == earlier
    why = f"its record is damaged (it names {victim}, which no cell was seen to write)"
    assert [(v.cell, v.reason) for v in verdicts] == [(2, why)]
    assert chosen.ignored == [f"the snapshot after cell 2: {why}: ignored"]
    assert chosen.damaged == [record.snapshot_id]


CELL = {"index": 1, "status": "ok", "stdout": "", "stderr": "", "wrote": []}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"version": 2}, "it was made by another version of tonic"),
        ({"cells": [{**CELL, "index": 0}]}, "its cells are not the notebook's"),
        ({"cells": [{**CELL, "index": 4}]}, "its cells are not the notebook's"),  # 3 cells
        ({"cells": [CELL, CELL]}, "its cells are not the notebook's"),
        ({"cells": [{**CELL, "stdout": "not base64!"}]}, "the output of its cell 1 is damaged"),
        ({"cells": [{**CELL, "status": None}]}, "the output of its cell 1 is damaged"),
        ({"cells": {}}, "its cells are not a list"),
        ({"files": {"../x": [None, None]}}, "it names '../x', which is not in the project"),
        ({"exit_code": "zero"}, "its fields are not a run record's"),
        ({"tail": None}, "its fields are not a run record's"),
    ],
)
def test_a_run_record_that_fails_a_check_is_ignored(
    setup: tuple[Store, Path, Path], change: dict[str, object], why: str
) -> None:
    store, _, path = setup
    prog = program(path, V1)
    keys = NotebookKeys.of(environment(prog.path), prog.notebook)
    tail = {"stdout": "", "stderr": "", "error": None}
    save_run(store, keys.full, RunRecord("criu", [CELL], tail, 0, None, 0.1, {}, {}, None), path)
    assert chooser(store, prog).stored_run() is not None
    doc = store.get_record(RUNS, keys.full)
    assert doc is not None
    store.put_record(RUNS, keys.full, {**doc, **change}, blobs=[])  # sealed again
    chosen = chooser(store, prog)
    assert chosen.stored_run() is None
    assert chosen.ignored == [
        f"the stored run's record cannot be used ({why}): ignored, the notebook ran"
    ]
