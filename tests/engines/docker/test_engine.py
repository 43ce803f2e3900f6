"""The docker engine end to end: files travel inside the container, the host's stay
untouched, gc removes what no snapshot needs, and a missing daemon is one clear line.
(The conformance suite and the edit-sequence test run against it too.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import node, require_engine, tonic

NOTEBOOK = """\
// %% one
const fs = require('fs');
const n = Math.random();
fs.writeFileSync('out.txt', 'written by cell one\\n');
console.log('one', n < 1);

// %% two
fs.appendFileSync('out.txt', 'and by cell two\\n');
console.log('two');

// %% three
console.log('three', fs.readFileSync('out.txt', 'utf8').split('\\n').length, n < 1);
"""


def _run(path: Path, *args: str) -> dict[str, object]:
    got = tonic("run", "--json", "--engine", "docker", *args, str(path), cwd=path.parent)
    assert got.code == 0, got.describe()
    data: dict[str, object] = json.loads(got.stdout)
    return data


def _our_images(cache: Path) -> list[str]:
    from tonic.engines.docker.api import Docker
    from tonic.engines.docker.labels import labels

    api = Docker.connect()
    try:
        return api.labeled_images(labels(cache))
    finally:
        api.close()


def test_files_travel_in_the_container(tmp_path: Path) -> None:
    require_engine("docker")
    path = tmp_path / "nb.js"
    path.write_text(NOTEBOOK)
    first = _run(path)
    assert [c["origin"] for c in first["cells"]] == ["executed"] * 3  # type: ignore[union-attr]
    assert not (tmp_path / "out.txt").exists(), "the host's folder was written to"
    path.write_text(NOTEBOOK.replace("'three'", "'THREE'"))
    second = _run(path)
    cells = second["cells"]
    assert isinstance(cells, list)
    assert [c["origin"] for c in cells] == ["restored", "restored", "executed"]
    # The restored container's file holds both cells' lines, written once each.
    assert cells[2]["stdout"] == "THREE 3 true\n"
    assert not (tmp_path / "out.txt").exists()
    expected = node(path)
    (tmp_path / "out.txt").unlink()
    got = tonic("run", "--plain", "--engine", "docker", str(path), cwd=tmp_path)
    assert (got.stdout, got.stderr, got.code) == (expected.stdout, expected.stderr, expected.code)


def test_gc_removes_images_no_snapshot_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_engine("docker")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TONIC_CACHE", str(cache))
    project = tmp_path / "project"
    project.mkdir()
    path = project / "nb.js"
    path.write_text(NOTEBOOK)
    _run(path)
    assert _our_images(cache), "no labeled images were made"
    got = tonic("cache", "gc")
    assert got.code == 0, got.describe()
    assert _our_images(cache), "gc removed images a snapshot needs"
    path.unlink()
    got = tonic("cache", "gc")
    assert got.code == 0, got.describe()
    assert _our_images(cache) == []


def test_cache_ls_counts_the_docker_images_of_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each labeled image's own layer (its size less its parent's), as docker says."""
    require_engine("docker")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TONIC_CACHE", str(cache))
    path = tmp_path / "nb.js"
    path.write_text(NOTEBOOK)
    ran = _run(path)
    images = _our_images(cache)
    assert images, "no labeled images were made"
    inspected = {}
    for image in images:
        out = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}} {{.Parent}}", image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        inspected[image] = (int(out[0]), out[1] if len(out) > 1 else "")

    def size(image: str) -> int:
        if image in inspected:
            return inspected[image][0]
        out = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", image],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout)

    own = sum(s - (size(parent) if parent else 0) for s, parent in inspected.values())
    got = tonic("cache", "ls", "--json")
    disk = json.loads(got.stdout)["disk"]
    assert disk["docker"] == own > 0, disk
    assert "docker images of this cache" in tonic("cache", "ls").stdout.decode()
    # (the snapshots need them all: the run's notes say why one was not kept)
    assert json.loads(got.stdout)["reclaimable"]["docker"] == 0, (ran["notes"], got.describe())
    path.unlink()  # now gc's: what ls promises is what gc removes
    promised = json.loads(tonic("cache", "ls", "--json").stdout)["reclaimable"]["docker"]
    assert 0 < promised <= own
    assert tonic("cache", "gc").code == 0
    assert json.loads(tonic("cache", "ls", "--json").stdout)["disk"]["docker"] == own - promised


def test_no_daemon_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    path = tmp_path / "nb.js"
    path.write_text("console.log(1);\n")
    got = tonic("run", "--engine", "docker", str(path), cwd=tmp_path)
    assert got.code == 2, got.describe()
    lines = got.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "no Docker daemon answers" in lines[0], got.describe()
    assert "Traceback" not in got.stderr.decode()


def test_image_option(tmp_path: Path) -> None:
    """--image runs in another local image (here tonic's own base, by its tag), and an
    image the daemon does not have is one line."""
    require_engine("docker")
    from tonic.engines.docker.api import Docker
    from tonic.engines.docker.image import image_tag

    api = Docker.connect()
    try:
        tag, _ = image_tag()
        assert api.image_id(tag) is not None
    finally:
        api.close()
    path = tmp_path / "nb.js"
    path.write_text("// %% a\nconsole.log('a');\n\n// %% b\nconsole.log('b', 1 + 1);\n")
    got = tonic("run", "--plain", "--image", tag, str(path), cwd=tmp_path)
    assert (got.stdout, got.code) == (b"a\nb 2\n", 0), got.describe()
    got = tonic("run", "--plain", "--image", "tonic-no-such-image:1", str(path), cwd=tmp_path)
    assert got.code == 2 and b"no image 'tonic-no-such-image:1'" in got.stderr, got.describe()


def test_killed_run_leaves_nothing_after_gc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tonic killed (-9) while a cell spins: its kernel container keeps running, owned by
    a dead process; `tonic cache gc` removes it."""
    require_engine("docker")
    import signal
    import subprocess
    import sys
    import time

    from tonic.engines.docker.api import KIND, Docker
    from tonic.engines.docker.labels import labels

    cache = tmp_path / "cache"
    monkeypatch.setenv("TONIC_CACHE", str(cache))
    path = tmp_path / "spin.js"
    path.write_text("// %% a\nconsole.log('a');\n\n// %% b\nwhile (true) {}\n")
    private = tmp_path / "tmp"  # tonic's temporary folders
    private.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tonic", "run", "--engine", "docker", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, TMPDIR=str(private)),
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # the first cell is done: the second one spins
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    api = Docker.connect()
    try:
        ours = {KIND: "kernel", **labels(cache)}
        assert api.labeled_containers(ours), "the spinning kernel's container is gone already"
        got = tonic("cache", "gc")
        assert got.code == 0, got.describe()
        assert api.labeled_containers(ours) == []
        # Its kernel's plan (the notebook's source) went as soon as the container had it;
        # the FIFO folder goes with a `tonic cache gc` a minute later.
        assert list(private.glob("tonic-kernel-*")) == [], "the killed run left its plan"
        assert tonic("cache", "clear").code == 0
        assert api.labeled_images(labels(cache)) == []
    finally:
        api.close()
