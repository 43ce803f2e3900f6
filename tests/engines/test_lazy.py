"""Lazy restores (engines/criu/lazy.py): the memory's pages come in as the restored tree
touches them, the rest in the background. A resumed run equals node's, and so does one
resumed from a snapshot dumped from a lazily restored tree (the dump waited until every
page was in); a daemon that fails makes the restore fail, and the run runs afresh."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import criu_wrapper, node, require_engine, tonic
from tonic.store.ingest import settled

# 64 MB filled in the first cell; the second touches one page of it, the third all.
NOTEBOOK = """// %% fill
const big = new Float64Array(8 << 20);
for (let i = 0; i < big.length; i++) big[i] = i * 3 + 1;
console.log('filled', big.length);

// %% one page
console.log('one', big[ONE]);

// %% every page
big[CHANGED] += 1;
let sum = 0;
for (let i = 0; i < big.length; i++) sum += big[i];
console.log('sum', sum);
"""


def _notebook(one: int, changed: int) -> str:
    return NOTEBOOK.replace("ONE", str(one)).replace("CHANGED", str(changed))


def _run(path: Path, env: dict[str, str]) -> dict[str, object]:
    out = tonic("run", "--json", "--engine", "criu", str(path), env=env, timeout=120)
    assert out.code == 0, out.describe()
    view: dict[str, object] = json.loads(out.stdout)
    return view


# (TONIC_HOT_CACHE, TONIC_LAZY_PAGES): images from the hot copy or from a scratch copy of
# the store's (removed right after the restore, while the daemon still serves them).
CASES = [("512M", "on"), ("0", "on"), ("512M", "off")]


@pytest.mark.parametrize(("hot", "lazy"), CASES)
def test_resumed_runs_equal_node(tmp_path: Path, hot: str, lazy: str) -> None:
    require_engine("criu")
    cache = tmp_path / "cache"
    env = {**os.environ, "TONIC_CACHE": str(cache), "TONIC_HOT_CACHE": hot}
    env["TONIC_LAZY_PAGES"] = lazy
    path = tmp_path / "nb.js"
    # fresh; cell 2 edited (restored after cell 1); cell 3 edited (restored after cell 2,
    # a snapshot of the tree restored the run before)
    notes: list[object] = []  # every run's so far
    for one, changed, restored in ((1, 5, 0), (2, 5, 1), (2, 6, 2)):
        path.write_text(_notebook(one, changed))
        with settled(cache):  # from the hot or the store's copy, not the dump itself
            pass
        view = _run(path, env)
        want = node(path)
        got = "".join(str(c["stdout"]) for c in view["cells"])  # type: ignore[attr-defined]
        assert (got.encode(), view["exit_code"]) == (want.stdout, want.code), view
        notes.append(view["notes"])
        if view["restored"] != restored:
            why = tonic("why", str(path), "--plain", env=env)
            pytest.fail(f"restored {view['restored']}, not {restored}; notes {notes}\n{why}")
        stats = view["stats"]
        assert isinstance(stats, dict)
        assert stats["lazy_pages"] is (restored > 0 and lazy == "on")
        assert stats["restored_from"] == (
            None if not restored else "store" if hot == "0" else "hot"
        )


# The first cell is worth a snapshot under the default policy (it runs for 0.3 s); the
# second ends at once, so node exits while its pages still come in, and V8 frees its heap
# (discards, then unmaps it) as CRIU's daemon serves it: without kernel/lazyshim.c the
# daemon gave up, and node died of SIGSEGV (every run).
EXITS_AT_ONCE = """// %% fill, then think
const big = new Float64Array(8 << 20);
for (let i = 0; i < big.length; i++) big[i] = i * 3 + 1;
const until = Date.now() + 300;
while (Date.now() < until);
console.log('filled', big.length);

// %% one page, and exit
console.log('one', big[ONE]);
"""


def test_node_exits_while_its_pages_come_in(tmp_path: Path) -> None:
    require_engine("criu")
    cache = tmp_path / "cache"
    env = {**os.environ, "TONIC_CACHE": str(cache), "TONIC_LAZY_PAGES": "on"}
    env["TONIC_SNAPSHOT_MIN_MS"] = "50"  # the default policy: no snapshot after cell 2
    path = tmp_path / "nb.js"
    for one in range(4):
        path.write_text(EXITS_AT_ONCE.replace("ONE", str(one)))
        view = _run(path, env)
        want = node(path)
        got = "".join(str(c["stdout"]) for c in view["cells"])  # type: ignore[attr-defined]
        assert (got.encode(), view["exit_code"]) == (want.stdout, want.code), view
        assert view["restored"] == (1 if one else 0), view["notes"]
        stats = view["stats"]
        assert isinstance(stats, dict)
        assert stats["lazy_pages"] is bool(one)


# A CRIU whose lazy-pages daemon fails: at once (`serve` ":"), or once it has served
# every page (`serve` '"$REAL" "$@"').
FAILING_DAEMON = """#!/bin/sh
REAL={real}
if [ "$1" = lazy-pages ]; then
  {serve}
  echo "Error (test): {said}" >&2
  exit 1
fi
exec "$REAL" "$@"
"""


def _edited(tmp_path: Path, serve: str, said: str) -> tuple[Path, dict[str, str]]:
    """A notebook run once, then edited, and the environment of a CRIU whose daemon
    fails so (FAILING_DAEMON)."""
    cache = tmp_path / "cache"
    env = {**os.environ, "TONIC_CACHE": str(cache), "TONIC_LAZY_PAGES": "on"}
    path = tmp_path / "nb.js"
    path.write_text(_notebook(1, 5))
    _run(path, env)
    path.write_text(_notebook(2, 5))
    env["TONIC_CRIU"] = str(criu_wrapper(tmp_path, FAILING_DAEMON, serve=serve, said=said))
    return path, env


def test_a_daemon_that_fails_runs_the_notebook_afresh(tmp_path: Path) -> None:
    require_engine("criu")
    path, env = _edited(tmp_path, ":", "no daemon today")
    view = _run(path, env)
    want = node(path)
    got = "".join(str(c["stdout"]) for c in view["cells"])  # type: ignore[attr-defined]
    assert got.encode() == want.stdout
    assert view["restored"] == 0
    notes = " ".join(map(str, view["notes"]))  # type: ignore[call-overload]
    assert "criu lazy-pages did not start: Error (test): no daemon today" in notes, notes
    assert "ran afresh" in notes, notes


def test_a_daemon_that_fails_while_node_runs_is_said(tmp_path: Path) -> None:
    require_engine("criu")
    path, env = _edited(tmp_path, '"$REAL" "$@"', "failed late")
    out = tonic("run", "--json", "--engine", "criu", str(path), env=env, timeout=120)
    view = json.loads(out.stdout)
    assert view["restored"] == 1 and view["stats"]["lazy_pages"] is True, view["notes"]
    said = b"tonic: criu lazy-pages failed: Error (test): failed late; this run's output may"
    assert said in out.stderr, out.describe()
    path.write_text(_notebook(3, 5))  # restored again, every page first from now on
    view = _run(path, env)
    assert view["restored"] == 1 and view["stats"]["lazy_pages"] is False, view["notes"]
