"""What a cell used, and the verdict when it changed: the rules of deps.py, as a table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonic.timetravel.deps import DIR, Digests, Surroundings, env_digest, stale


def around(
    tmp: Path, env: dict[str, str], starting: dict[str, str | None] | None = None
) -> Surroundings:
    return Surroundings(env, str(tmp), Digests(), starting or {})


@pytest.mark.parametrize(
    ("token", "change", "reason"),
    [
        ("env:API", {"API": "2"}, "cell 1 read $API, which changed"),
        ("env:API", {}, "cell 1 read $API, which is now unset"),
        ("env:NEW", {"API": "1", "NEW": "x"}, "cell 1 read $NEW, which is now set"),
        ("env:*", {"API": "1", "SHLVL": "3"}, "cell 1 listed the environment"),
        ("env:API", {"API": "1", "SHLVL": "3"}, None),  # a variable it did not read
        ("cwd", {"API": "1"}, None),
    ],
)
def test_environment(
    tmp_path: Path, token: str, change: dict[str, str], reason: str | None
) -> None:
    then = around(tmp_path, {"API": "1"})
    uses = {token: then.now(token)}
    verdict = stale([(1, uses)], around(tmp_path, change))
    assert (
        verdict == reason if reason is None else verdict is not None and verdict.startswith(reason)
    )


def test_files_directories_and_lookups(tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text("1")
    (tmp_path / "d").mkdir()
    tokens = [f"file:{data}", f"dir:{tmp_path / 'd'}", f"path:{tmp_path / 'cache.json'}"]
    uses = {t: around(tmp_path, {}).now(t) for t in tokens}
    assert stale([(2, uses)], around(tmp_path, {})) is None
    data.write_text("2")
    assert stale([(2, uses)], around(tmp_path, {})) == "cell 2 read data.json, which changed"
    data.write_text("1")
    (tmp_path / "d" / "new").write_text("")
    assert stale([(2, uses)], around(tmp_path, {})) == "cell 2 listed d, which changed"
    (tmp_path / "d" / "new").unlink()
    (tmp_path / "cache.json").write_text("{}")
    assert (
        stale([(2, uses)], around(tmp_path, {})) == "cell 2 looked for cache.json, which now exists"
    )


def test_files_the_notebook_writes_count_by_their_starting_state(tmp_path: Path) -> None:
    """What a cell saw of a file the notebook itself writes is what it sees once the
    files are rolled back: the file the last run left is not a change."""
    out = tmp_path / "out.txt"
    tokens = [f"path:{out}", f"file:{out}", f"dir:{tmp_path}"]
    uses = {t: around(tmp_path, {}).now(t) for t in tokens}  # before the notebook wrote it
    out.write_text("what the last run wrote")
    assert stale([(1, uses)], around(tmp_path, {})) is not None
    assert stale([(1, uses)], around(tmp_path, {}, {str(out): None})) is None
    folder = tmp_path / "made"
    folder.mkdir()
    uses = {f"path:{folder}": "d"}
    assert stale([(1, uses)], around(tmp_path, {}, {str(folder): DIR})) is None


def test_env_digest_is_of_names_and_values() -> None:
    assert env_digest({"A": "1", "B": "2"}) == env_digest({"B": "2", "A": "1"})
    assert env_digest({"A": "1"}) != env_digest({"A": "2"})
