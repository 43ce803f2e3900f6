"""`tonic cache ls` and `gc --max-size` against the disk: after real runs of notebooks with
small and large heaps, `ls` accounts for every byte `du` counts in the cache folder (and
the docker engine's images of the cache, where a daemon answers), and `gc --max-size`
reaches its target within one snapshot, the newest snapshot of each notebook kept."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import require_engine, tonic

HEAP = """// %% heap
const big = Array.from({{ length: {n} }}, (_, i) => ({{ i, s: 'x' + i }}));
{{ const t = Date.now(); while (Date.now() - t < 80); }}
console.log('heap', big.length);

// %% next
{{ const t = Date.now(); while (Date.now() - t < 80); }}
console.log('next', {v});

// %% last
console.log('last', {v});
"""


def du(folder: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(folder)], capture_output=True, check=True
    )
    return int(out.stdout.split()[0])


def ls(env: dict[str, str]) -> dict[str, object]:
    got = tonic("cache", "ls", "--json", env=env)
    assert got.code == 0, got.describe()
    data: dict[str, object] = json.loads(got.stdout)
    return data


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A cache after runs of a small-heap and a large-heap notebook, each edited twice."""
    require_engine("criu")
    import os

    root = tmp_path / "cache"
    env = {**os.environ, "TONIC_CACHE": str(root), "TONIC_SERVER": "off"}
    for name, n in (("small.js", 1000), ("large.js", 400_000)):
        for v in range(3):
            path = tmp_path / name
            path.write_text(HEAP.format(n=n, v=v))
            got = tonic("run", "--plain", "--engine", "criu", str(path), env=env)
            assert got.code == 0, got.describe()
    return root, env


def test_ls_counts_every_byte_on_disk(cache: tuple[Path, dict[str, str]]) -> None:
    root, env = cache
    data = ls(env)
    disk = data["disk"]
    assert isinstance(disk, dict)
    folder = sum(v for k, v in disk.items() if k != "docker")
    measured = du(root)
    assert abs(folder - measured) <= 0.03 * measured, (disk, measured)
    assert disk["unpacked"] > 0 and disk["stored"] > 0, disk
    shown = tonic("cache", "ls", env=env).stdout.decode()
    assert "unpacked images" in shown and "in all, on disk" in shown, shown


def test_gc_max_size_reaches_its_target_and_keeps_the_newest(
    cache: tuple[Path, dict[str, str]],
) -> None:
    root, env = cache
    before = ls(env)
    snaps = before["snapshots"]
    assert isinstance(snaps, list) and len(snaps) >= 4, snaps
    biggest = max(int(s["bytes"]) for s in snaps)
    newest = {}
    for s in sorted(snaps, key=lambda s: s["used"]):
        newest[s["notebook"]] = s["id"]
    target = int(before["total_bytes"]) // 2  # type: ignore[call-overload]
    got = tonic("cache", "gc", "--max-size", str(target), env=env)
    assert got.code == 0, got.describe()
    after = ls(env)
    total = int(after["total_bytes"])  # type: ignore[call-overload]
    assert total <= target, got.stdout.decode()
    assert total >= target - 2 * biggest, f"dropped more than needed: {total} of {target}"
    kept = {s["id"] for s in after["snapshots"]}  # type: ignore[union-attr]
    assert set(newest.values()) <= kept, (newest, kept)
    assert abs(du(root) - sum(v for k, v in after["disk"].items() if k != "docker")) < (  # type: ignore[union-attr]
        0.03 * du(root)
    )
    assert "freed" in got.stdout.decode() and "left" in got.stdout.decode()


def test_ls_says_what_a_plain_gc_would_free(cache: tuple[Path, dict[str, str]]) -> None:
    root, env = cache
    (root.parent / "large.js").unlink()  # its snapshots and unpacked images are gc's now
    promised = int(ls(env)["reclaimable_bytes"])  # type: ignore[call-overload]
    before = du(root)
    got = tonic("cache", "gc", env=env)
    assert got.code == 0, got.describe()
    freed = before - du(root)
    assert freed > 1 << 20, got.stdout.decode()
    assert abs(promised - freed) <= 0.05 * freed, (promised, freed)
    assert int(ls(env)["reclaimable_bytes"]) <= 0.01 * du(root)  # type: ignore[call-overload]
    shown = tonic("cache", "ls", env=env).stdout.decode()
    assert "of it `tonic cache gc` would free" in shown, shown
