"""The changes `tonic watch` and `tonic serve` wait for (tonic/watching.py): each way of
saving a file is one change of it, seen as it ends; what is not followed is not seen."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tonic.watching import Watcher


def _in_place(f: Path) -> None:
    f.write_text("saved in place\n")


def _renamed_over(f: Path) -> None:  # an editor's "safe write"
    tmp = f.with_name(f".{f.name}.tmp")
    tmp.write_text("saved by a rename\n")
    os.replace(tmp, f)


def _deleted_then_written(f: Path) -> None:
    f.unlink()
    f.write_text("written anew\n")


def _deleted(f: Path) -> None:
    f.unlink()


def _kept_open(f: Path) -> None:  # a writer that never closes it (a log)
    handle = f.open("a")
    handle.write("one more line\n")
    handle.flush()
    threading.Timer(2.0, handle.close).start()


SAVES: dict[str, Callable[[Path], None]] = {
    "in place": _in_place,
    "renamed over": _renamed_over,
    "deleted, then written": _deleted_then_written,
    "deleted": _deleted,
    "written, still open": _kept_open,
}


@pytest.fixture
def watcher() -> Iterator[Watcher]:
    w = Watcher()
    yield w
    w.close()


def _after(w: Watcher, act: Callable[[], None]) -> set[str]:
    """What `changed` returns for an act done while it waits (it blocks until then)."""
    timer = threading.Timer(0.05, act)
    timer.start()
    try:
        return w.changed()
    finally:
        timer.join()


@pytest.mark.parametrize("save", SAVES.values(), ids=list(SAVES))
def test_a_save_is_one_change(
    save: Callable[[Path], None], watcher: Watcher, tmp_path: Path
) -> None:
    nb, other = tmp_path / "nb.js", tmp_path / "other.js"
    nb.write_text("before\n")
    other.write_text("not followed\n")
    watcher.follow({str(nb)})
    assert _after(watcher, lambda: (other.write_text("x\n"), save(nb))) == {str(nb)}
    # Nothing of that save is left over for the next call.
    assert _after(watcher, lambda: (tmp_path / "nb.js").write_text("again\n")) == {str(nb)}


def test_a_save_while_nobody_waits_is_kept(watcher: Watcher, tmp_path: Path) -> None:
    nb, data = tmp_path / "nb.js", tmp_path / "data.txt"
    for f in (nb, data):
        f.write_text("before\n")
    watcher.follow({str(nb), str(data)})
    data.write_text("changed during a run\n")  # (no call of changed() under way)
    nb.write_text("changed too\n")
    got = watcher.changed()
    if got != {str(nb), str(data)}:  # (both came, in one read or in two)
        got |= watcher.changed()
    assert got == {str(nb), str(data)}


def test_follow_moves_to_the_new_files(watcher: Watcher, tmp_path: Path) -> None:
    old, sub = tmp_path / "old.txt", tmp_path / "sub"
    sub.mkdir()
    new = sub / "new.txt"
    for f in (old, new):
        f.write_text("before\n")
    watcher.follow({str(old)})
    watcher.follow({str(new)})
    assert _after(watcher, lambda: (old.write_text("x\n"), new.write_text("y\n"))) == {str(new)}


def test_a_folder_that_goes_away_changes_its_files(watcher: Watcher, tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "data.txt").write_text("before\n")
    watcher.follow({str(sub / "data.txt"), str(tmp_path / "missing" / "x.txt")})
    assert str(sub / "data.txt") in _after(watcher, lambda: shutil.rmtree(sub))
