"""Records that cannot point anywhere else (issue 14): a run record, a files record or a
snapshot record crafted to name a place the notebook may not write (or damaged) is
ignored, with a note, and the unchanged rerun equals `node FILE` and touches nothing but
the notebook's own files: a sentinel outside the project keeps its content and mtime."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import FAULTS, Outcome, node, require_engine, tonic
from tonic.store import seal
from tonic.store.ingest import settled

NOTEBOOK = """\
// %% write
const fs = require('fs');
const path = require('path');
fs.writeFileSync(path.join(__dirname, 'out.txt'), 'out 1\\n');
fs.writeFileSync(ELSEWHERE, 'elsewhere 1\\n');
console.log('wrote');

// %% last
console.log('last', fs.readFileSync(path.join(__dirname, 'out.txt'), 'utf8').trim());
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    """A project with a notebook that writes out.txt in it and elsewhere/w.txt outside
    it (an observed absolute write), a sentinel it never writes (outside/victim.txt),
    and a cache of its own."""

    tmp: Path
    env: dict[str, str]
    expected: Outcome

    @property
    def project(self) -> Path:
        return self.tmp / "project"

    @property
    def path(self) -> Path:
        return self.project / "nb.js"

    @property
    def outside(self) -> Path:
        return self.tmp / "outside"

    @property
    def victim(self) -> Path:
        return self.outside / "victim.txt"

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"

    @property
    def payload(self) -> str:
        """A stored content (out.txt's), what a crafted record would write."""
        return sha(b"out 1\n")

    def state(self, path: Path) -> str:
        return sha(path.read_bytes())

    def run(self) -> Outcome:
        out = tonic("run", "--plain", "--engine", "criu", str(self.path), env=self.env)
        with settled(self.cache):  # the snapshots are stored
            pass
        return out

    def why(self) -> str:
        out = tonic("why", "--plain", "--engine", "criu", str(self.path), env=self.env)
        assert out.code == 0, out.describe()
        return out.stdout.decode()


@pytest.fixture
def world(tmp_path: Path) -> World:
    require_engine("criu")
    tmp = Path(os.path.realpath(tmp_path))
    for folder in ("project", "outside", "elsewhere"):
        (tmp / folder).mkdir()
    (tmp / "outside" / "victim.txt").write_text("keep\n")
    text = NOTEBOOK.replace("ELSEWHERE", json.dumps(str(tmp / "elsewhere" / "w.txt")))
    (tmp / "project" / "nb.js").write_text(text)
    env = dict(os.environ, TONIC_CACHE=str(tmp / "cache"))
    w = World(tmp, env, node(tmp / "project" / "nb.js"))
    assert w.expected.code == 0, w.expected.describe()
    first = w.run()
    assert (first.stdout, first.stderr, first.code) == (
        w.expected.stdout,
        w.expected.stderr,
        w.expected.code,
    ), first.describe()
    (w.cache / "sentinel.txt").write_text("the cache's own\n")
    return w


Tree = dict[str, tuple[str, bytes, int]]


def tree(folder: Path, mtimes: bool) -> Tree:
    """Every entry under `folder`: kind, content (a link's target), mtime (if asked)."""
    found: Tree = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        stamp = st.st_mtime_ns if mtimes else 0
        if path.is_symlink():
            found[str(path.relative_to(folder))] = ("link", os.readlink(path).encode(), 0)
        elif path.is_dir():
            found[str(path.relative_to(folder))] = ("dir", b"", 0)
        else:
            found[str(path.relative_to(folder))] = ("file", path.read_bytes(), stamp)
    return found


def observe(doc: dict[str, object], path: str) -> None:
    """Add `path` to the writes the record's observation saw (a crafter who knows)."""
    if "cells" in doc:
        cells = doc["cells"]
        assert isinstance(cells, list)
        cells[0]["wrote"].append(path)
    else:
        wrote = doc["wrote"]
        assert isinstance(wrote, list)
        wrote.append(path)


def files(doc: dict[str, object]) -> dict[str, object]:
    found = doc["files"]
    assert isinstance(found, dict)
    return found


# -- the crafts: each changes one record's body ---------------------------------------


def absolute(doc: dict[str, object], w: World) -> None:
    """The victim, by its absolute path, to be overwritten (the run's state of it fits)."""
    files(doc)[str(w.victim)] = [w.state(w.victim), w.payload]


def absolute_delete(doc: dict[str, object], w: World) -> None:
    """The last run's writes: the victim, as if the notebook made it (so: deleted)."""
    files(doc)[str(w.victim)] = [None, w.state(w.victim)]


def absolute_overwrite(doc: dict[str, object], w: World) -> None:
    """The last run's writes: the victim, as if it were the payload before."""
    files(doc)[str(w.victim)] = [w.payload, w.state(w.victim)]


def dotdot(doc: dict[str, object], w: World) -> None:
    files(doc)["../outside/victim.txt"] = [w.state(w.victim), w.payload]


def dotdot_delete(doc: dict[str, object], w: World) -> None:
    files(doc)["../outside/victim.txt"] = [None, w.state(w.victim)]


def symlinked(doc: dict[str, object], w: World) -> None:
    """A folder of the project that is a link to the victim's."""
    if not (w.project / "link").is_symlink():
        (w.project / "link").symlink_to(w.outside)
    files(doc)["link/victim.txt"] = [w.state(w.victim), w.payload]


def in_cache(doc: dict[str, object], w: World) -> None:
    """A file in tonic's cache, among the observed writes too."""
    target = w.cache / "sentinel.txt"
    files(doc)[str(target)] = [w.state(target), w.payload]
    observe(doc, str(target))


def another_version(doc: dict[str, object], w: World) -> None:
    absolute(doc, w)
    doc["version"] = 2


def not_a_state(doc: dict[str, object], w: World) -> None:
    """out.txt's content to be the object at a path out of the store."""
    files(doc)["out.txt"] = [w.state(w.project / "out.txt"), "../../outside/victim.txt"]


def missing_content(doc: dict[str, object], w: World) -> None:
    """out.txt's content to be one the store does not hold (gone: a damaged cache)."""
    files(doc)["out.txt"] = [w.state(w.project / "out.txt"), sha(b"never stored\n")]


Craft = Callable[[dict[str, object], World], None]
TRUNCATED: Craft = absolute  # and then cut short


def records(w: World, kind: str) -> list[Path]:
    if kind == "run":
        found = sorted((w.cache / "runs").glob("*.json"))
    elif kind == "files":
        found = sorted((w.cache / "files").glob("*.json"))
    else:
        found = sorted((w.cache / "snapshots").glob("*/*.json"))
    assert found if kind == "snapshot" else len(found) == 1, found
    return found


def craft(path: Path, change: Craft, w: World, reseal: bool, cut: bool) -> None:
    doc = json.loads(path.read_bytes())
    body = doc["meta"] if path.parent.parent.name == "snapshots" else doc
    change(body, w)
    if reseal:
        body = seal({k: v for k, v in body.items() if k != "blake2b"})
    if path.parent.parent.name == "snapshots":
        doc["meta"] = body
    else:
        doc = body
    data = json.dumps(doc).encode()
    path.write_bytes(data[: len(data) // 2] if cut else data)


# (record, craft, sealed again with a checksum that fits, cut short, what the note says)
CASES = {
    "run-absolute": ("run", absolute, True, False, "which no cell was seen to write"),
    "run-dotdot": ("run", dotdot, True, False, "which is not in the project"),
    "run-symlinked-parent": ("run", symlinked, True, False, "under a symbolic link"),
    "run-into-the-cache": ("run", in_cache, True, False, "which is in tonic's cache"),
    "run-bad-checksum": ("run", absolute, False, False, "its checksum does not match"),
    "run-wrong-version": ("run", another_version, True, False, "another version of tonic"),
    "run-truncated": ("run", TRUNCATED, False, True, "it is not whole JSON"),
    "run-not-a-state": ("run", not_a_state, True, False, "which is not a file's state"),
    "run-missing-content": ("run", missing_content, True, False, "missing from the cache"),
    "files-absolute-delete": ("files", absolute_delete, True, False, "no cell was seen"),
    "files-absolute-overwrite": ("files", absolute_overwrite, True, False, "no cell was seen"),
    "files-dotdot-delete": ("files", dotdot_delete, True, False, "not in the project"),
    "files-into-the-cache": ("files", in_cache, True, False, "which is in tonic's cache"),
    "files-truncated": ("files", TRUNCATED, False, True, "it is not whole JSON"),
    "snapshot-absolute": ("snapshot", absolute, True, False, "which no cell was seen"),
    "snapshot-dotdot": ("snapshot", dotdot, True, False, "which is not in the project"),
    "snapshot-symlinked-parent": ("snapshot", symlinked, True, False, "symbolic link"),
    "snapshot-bad-checksum": ("snapshot", absolute, False, False, "checksum does not match"),
}


@pytest.mark.parametrize(("kind", "change", "reseal", "cut", "note"), CASES.values(), ids=CASES)
def test_a_crafted_record_is_ignored(
    world: World, kind: str, change: Craft, reseal: bool, cut: bool, note: str
) -> None:
    w = world
    targets = records(w, kind)
    if kind == "snapshot":
        # the unchanged rerun looks for snapshots only when there is no stored run
        for run in records(w, "run"):
            run.unlink()
        targets = [t for t in targets if t.name in ("info.json", "manifest.json")]
    for target in targets:
        craft(target, change, w, reseal, cut)
    before = {
        "outside": tree(w.outside, mtimes=True),
        "sentinel": (w.cache / "sentinel.txt").stat().st_mtime_ns,
        "project": tree(w.project, mtimes=False),
        "elsewhere": tree(w.tmp / "elsewhere", mtimes=False),
    }
    why = w.why()
    got = w.run()  # unchanged
    assert (got.stdout, got.stderr, got.code) == (
        w.expected.stdout,
        w.expected.stderr,
        w.expected.code,
    ), got.describe()
    assert tree(w.outside, mtimes=True) == before["outside"], "outside the project"
    assert (w.cache / "sentinel.txt").read_text() == "the cache's own\n"
    assert (w.cache / "sentinel.txt").stat().st_mtime_ns == before["sentinel"]
    assert tree(w.project, mtimes=False) == before["project"]
    assert tree(w.tmp / "elsewhere", mtimes=False) == before["elsewhere"]
    assert (w.project / "out.txt").read_text() == "out 1\n"
    assert note in why and "note: " in why, why  # one line saying which record, and why
    again = w.why()
    assert "unchanged since its last run" in again and "note: " not in again, again
    FAULTS["a crafted or damaged record"] += 1


def test_the_notebooks_own_writes_still_travel(world: World) -> None:
    """A path in the project is stored relative to it, one outside it absolute (its cell
    was seen to write it): an unchanged rerun shows the stored run, an edit resumes."""
    w = world
    (run,) = records(w, "run")
    doc = json.loads(run.read_bytes())
    assert sorted(doc["files"]) == sorted(["out.txt", str(w.tmp / "elsewhere" / "w.txt")])
    assert "unchanged since its last run" in w.why()
    w.path.write_text(w.path.read_text().replace("trim());", "trim(), 2);"))
    assert "restores cells 1-1" in w.why()
    got = w.run()
    assert got.code == 0 and got.stdout == b"wrote\nlast out 1 2\n", got.describe()
    assert (w.tmp / "elsewhere" / "w.txt").read_text() == "elsewhere 1\n"
