"""File time travel's rules, without node: starting states, which snapshots' writes fit
them, and the rollback that puts the disk into a snapshot's state."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tonic.store import Store
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


def test_records_of_relative_paths_are_not_used(tmp_path: Path) -> None:
    """An older tonic's record named paths relative to the project: ignored."""
    store = Store(tmp_path / "store")
    notebook = tmp_path / "nb.js"
    fstravel.save_last(store, notebook, {str(tmp_path / "a"): [None, A]})
    assert fstravel.load_last(store, notebook) == {str(tmp_path / "a"): [None, A]}
    fstravel.save_last(store, notebook, {"a.txt": [None, A]})
    assert fstravel.load_last(store, notebook) == {}
