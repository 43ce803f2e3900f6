"""File time travel's rules, without node: starting states, which snapshots' writes fit
them, and the rollback that puts the disk into a snapshot's state."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tonic.store import FILES, DamagedRecord, Store
from tonic.timetravel import fstravel
from tonic.timetravel.deps import DIR, Digests


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


A, B, C = h(b"a"), h(b"b"), h(b"c")


# (what the last run left: [starting, after], what is on disk now, the starting state)
@pytest.mark.parametrize(
    ("last", "disk", "starting"),
    [
        ([None, A], b"a", None),  # as the notebook left it: back to before it
        ([B, A], b"a", B),
        ([None, A], b"c", C),  # changed by someone else: the file as it is now
        ([None, A], None, None),  # deleted by someone else
        ([B, None], b"c", C),  # the notebook deleted it; someone made it again
        ([fstravel.UNKNOWN, A], b"a", A),  # tonic never saw what it was before
        ([None, DIR], DIR, None),
    ],
)
def test_starting_states(
    tmp_path: Path, last: list[str | None], disk: bytes | str | None, starting: str | None
) -> None:
    path = tmp_path / "f"
    if disk == DIR:
        path.mkdir()
    elif isinstance(disk, bytes):
        path.write_bytes(disk)
    assert fstravel.starting_states({str(path): last}, Digests()) == {str(path): starting}


def test_a_snapshot_fits_only_its_own_starting_states(tmp_path: Path) -> None:
    out, other = str(tmp_path / "out"), str(tmp_path / "other")
    (tmp_path / "other").write_bytes(b"c")
    digest = Digests()
    assert fstravel.unresumable({out: [None, A]}, {out: None}, digest) is None
    assert fstravel.unresumable({out: [None, A]}, {out: B}, digest) == out
    # a path the last run did not write: its state now is its starting state
    assert fstravel.unresumable({other: [C, A]}, {}, digest) is None
    assert fstravel.unresumable({other: [None, A]}, {}, digest) == other
    assert fstravel.unresumable({out: [fstravel.UNKNOWN, A]}, {out: A}, digest) == out


def test_rollback_touches_only_what_the_notebook_wrote(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    blobs = {name: store.put_blob(name) for name in (b"a", b"b")}
    mine, made, gone, foreign = (str(tmp_path / n) for n in ("mine", "made", "gone", "foreign"))
    folder = tmp_path / "dir"
    folder.mkdir()
    Path(mine).write_bytes(b"b")
    Path(made).write_bytes(b"a")
    Path(foreign).write_bytes(b"foreign")
    (folder / "x").write_bytes(b"a")
    last = {
        mine: [blobs[b"a"], blobs[b"b"]],  # back to a
        made: [None, blobs[b"a"]],  # made by the last run: removed
        str(folder): [None, DIR],  # made by the last run, emptied first, then removed
        str(folder / "x"): [None, blobs[b"a"]],
    }
    target = {gone: [None, blobs[b"b"]]}  # the snapshot's run wrote it
    digest = Digests()
    starting = fstravel.starting_states(last, digest)
    writes = fstravel.plan_rollback(target, last, starting, digest)
    fstravel.apply(writes, store.get_blob)
    assert Path(mine).read_bytes() == b"a"
    assert not Path(made).exists() and not folder.exists()
    assert Path(gone).read_bytes() == b"b"
    assert Path(foreign).read_bytes() == b"foreign"
    assert fstravel.plan_rollback(target, last, starting, Digests()) == {}


def test_tracker_knows_created_paths_and_not_others(tmp_path: Path) -> None:
    new, old = tmp_path / "new", tmp_path / "old"
    new.write_bytes(b"a")
    old.write_bytes(b"b")
    tracker = fstravel.Tracker(lambda data: h(data))
    tracker.start({}, {})
    tracker.step([(str(new), True), (str(old), False)])
    assert tracker.changes() == {str(new): [None, A], str(old): [fstravel.UNKNOWN, B]}


def test_the_files_record_stores_project_paths_relative(tmp_path: Path) -> None:
    """In the project a path is stored relative to it; outside it, absolute, with the
    cells' observed writes beside it (places.py)."""
    store = Store(tmp_path / "store")
    assert (store.put_blob(b"a"), store.put_blob(b"b")) == (A, B)
    project, elsewhere = tmp_path / "p", tmp_path / "elsewhere"
    project.mkdir()
    notebook = project / "nb.js"
    files = {str(project / "a"): [None, A], str(elsewhere / "b"): [B, None]}
    fstravel.save_last(store, notebook, files, [*files, str(tmp_path / "other")])
    doc = store.get_record(FILES, fstravel._record_name(notebook))
    assert doc is not None
    assert doc["files"] == {"a": [None, A], str(elsewhere / "b"): [B, None]}
    assert doc["wrote"] == [str(elsewhere / "b")]
    assert fstravel.load_last(store, notebook) == files


# (a path in the files record, the record's observed writes (OUT: the path outside), the
# states, why the record is damaged: None when it is not)
OUT = "outside/x"
CACHE = "p/.tonic-cache"  # a cache in the project ($TONIC_CACHE=.tonic-cache)


@pytest.mark.parametrize(
    ("key", "wrote", "states", "why"),
    [
        ("a.txt", [], [None, A], None),
        ("sub/a.txt", [], [DIR, fstravel.UNKNOWN], None),
        ("/" + OUT, [OUT], [None, A], None),  # observed
        ("/" + OUT, [], [None, A], "which no cell was seen to write"),
        ("/" + OUT, ["outside/y"], [B, A], "which no cell was seen to write"),
        ("../outside/x", [], [None, A], "which is not in the project"),
        ("sub/../../outside/x", [], [None, A], "which is not in the project"),
        ("./a", [], [None, A], "which is not in the project"),
        ("a//b", [], [None, A], "which is not in the project"),
        ("a/", [], [None, A], "which is not in the project"),
        ("", [], [None, A], "which is not a path"),
        ("a\x00b", [], [None, A], "which is not a path"),
        ("/outside/../p/a", ["outside/../p/a"], [None, A], "which is not a plain path"),
        ("//" + OUT, ["/" + OUT], [None, A], "which is not a plain path"),
        ("link/x", [], [None, A], "under a symbolic link"),  # p/link -> outside
        ("/outside/link/x", ["outside/link/x"], [None, A], "under a symbolic link"),
        (".tonic-cache/runs/r.json", [], [None, A], "which is in tonic's cache"),
        ("/" + CACHE, [CACHE], [None, A], "which is in tonic's cache"),
        ("a.txt", [], [None, "../../etc/passwd"], "which is not a file's state"),
        ("a.txt", [], [None, A.upper()], "which is not a file's state"),
        ("a.txt", [], [None], "are not a pair"),
        ("a.txt", [], [None, B], "a content it names is missing from the cache"),
    ],
)
def test_a_files_record_names_only_places_the_notebook_may_write(
    tmp_path: Path, key: str, wrote: list[str], states: list[str | None], why: str | None
) -> None:
    project, outside = tmp_path / "p", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (project / "link").symlink_to(outside)
    (outside / "link").symlink_to(project)
    store = Store(tmp_path / CACHE)
    assert store.put_blob(b"a") == A
    notebook = project / "nb.js"
    fstravel.save_last(store, notebook, {}, [])
    name = fstravel._record_name(notebook)
    doc = store.get_record(FILES, name)
    assert doc is not None
    key = key.replace("/outside", str(outside)).replace("/" + CACHE, str(tmp_path / CACHE))
    doc["files"] = {key: states}
    doc["wrote"] = [str(tmp_path / w) for w in wrote]
    store.put_record(FILES, name, doc, blobs=[])  # sealed: the checksum matches
    if why is None:
        place = key if key.startswith("/") else str(project / key)
        assert fstravel.load_last(store, notebook) == {place: states}
        return
    with pytest.raises(DamagedRecord) as err:
        fstravel.load_last(store, notebook)
    assert why in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("version", 2, "it was made by another version of tonic"),
        ("notebook", "/elsewhere/nb.js", "it is another notebook's"),
        ("wrote", None, "it has no list of the paths the notebook wrote"),
        ("files", [], "its files are not a table"),
    ],
)
def test_a_files_record_of_another_kind(
    tmp_path: Path, field: str, value: object, why: str
) -> None:
    store = Store(tmp_path / "store")
    notebook = tmp_path / "nb.js"
    fstravel.save_last(store, notebook, {str(tmp_path / "a"): [None, A]}, [])
    name = fstravel._record_name(notebook)
    doc = store.get_record(FILES, name)
    assert doc is not None
    store.put_record(FILES, name, {**doc, field: value}, blobs=[])
    with pytest.raises(DamagedRecord) as err:
        fstravel.load_last(store, notebook)
    assert str(err.value) == why


def test_rollback_never_writes_under_a_symbolic_link(tmp_path: Path) -> None:
    """A folder the notebook wrote in that is a link now (someone else's): untouched."""
    store = Store(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"keep")
    (tmp_path / "link").symlink_to(outside)
    fstravel.apply({str(tmp_path / "link" / "x"): None}, store.get_blob)
    fstravel.apply({str(tmp_path / "link" / "y"): store.put_blob(b"a")}, store.get_blob)
    assert sorted(os.listdir(outside)) == ["x"] and (outside / "x").read_bytes() == b"keep"
