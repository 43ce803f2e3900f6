"""The docker engine's groundwork against a real dockerd: the default image, a kernel-like
node program in a container talking over FIFOs, a checkpoint (CRIU + commit) at a pause,
and restores into new containers that continue with the same memory and files.

Skipped where no usable Docker daemon runs, unless TONIC_REQUIRE_ENGINES names docker.
Everything a test makes carries a `tonic.test` label of its own and is removed after it.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import required_engines
from tonic.engines import natives
from tonic.engines.docker import api as dockerapi
from tonic.engines.docker import image as dockerimage
from tonic.engines.docker import tree as dockertree
from tonic.errors import (
    DockerCriuError,
    DockerError,
    DockerNotExperimentalError,
    DockerUnreachableError,
)
from tonic.settings import node_binary
from tonic.store.layout import default_root

# Blocks reading commands on fd 3; answers each with a JSON event on fd 4 and a line on
# stdout and stderr. Its state: a counter, a random number, a file in its directory.
PROGRAM = r"""
const fs = require('fs');
const os = require('os');
let n = 0;
const r = Math.random();
const buf = Buffer.alloc(4096);
for (;;) {
  const k = fs.readSync(3, buf, 0, buf.length, null);
  if (k === 0) process.exit(3);
  const [op, arg] = buf.toString('utf8', 0, k).trim().split(' ');
  if (op === 'exit') process.exit(Number(arg));
  if (op === 'write') fs.writeFileSync('note.txt', arg);
  n++;
  process.stdout.write(`out ${n}\n`);
  process.stderr.write(`err ${n}\n`);
  const note = fs.existsSync('note.txt') ? fs.readFileSync('note.txt', 'utf8') : null;
  fs.writeSync(4, JSON.stringify({
    n, r, note, cwd: process.cwd(), exe: process.execPath, host: os.hostname(),
    user: os.userInfo(), env: Object.keys(process.env).sort(), stack: new Error('x').stack,
  }) + '\n');
}
"""


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[dockerapi.Docker, str]]:
    """The daemon and the default image; skipped (or failed, when required) if unusable."""
    try:
        if os.geteuid() != 0:
            raise DockerError("the docker engine's checkpoints need root")
        docker = dockerapi.Docker.connect()
        built = dockerimage.ready(docker)
    except DockerError as err:
        if "docker" in required_engines():
            pytest.fail(f"the docker engine is required here but cannot run: {err}")
        pytest.skip(f"docker unavailable: {err}")
    yield docker, built.image
    docker.close()


@pytest.fixture
def labels(api: tuple[dockerapi.Docker, str]) -> Iterator[dict[str, str]]:
    """A label for everything this test makes; all of it is removed afterwards."""
    mine = {"tonic.test": uuid.uuid4().hex[:12]}
    yield mine
    docker = api[0]
    docker.remove_labeled(mine)
    assert docker.labeled_containers(mine) == []
    assert docker.labeled_images(mine) == []


def _line(fd: int, timeout: float = 20) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no answer in time (so far {data!r})"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"end of file (so far {data!r})"
            data += chunk
    return data


def _talk(kernel: dockertree.ContainerKernel, command: str) -> tuple[dict[str, object], bytes]:
    ours = kernel.ours
    assert ours is not None
    os.write(ours.cmd, command.encode() + b"\n")
    event = json.loads(_line(ours.events))
    return event, _line(ours.stdout) + b"|" + _line(ours.stderr)


def _drain_to_eof(fd: int, timeout: float = 20) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk
    raise AssertionError("no end of file")


def _start(
    api: tuple[dockerapi.Docker, str],
    project: Path,
    labels: dict[str, str],
    layered: bool = False,
) -> dockertree.ContainerKernel:
    """The program in a container; its project copied in, or (`layered`) in an image
    layer of its own that the container starts from."""
    program = project / "kernelish.js"
    program.write_text(PROGRAM)
    docker, image = api
    copies = [project]
    if layered:
        image = dockertree.layer(docker, image, copies, labels=labels)
        copies = []
    env = {k: v for k, v in os.environ.items() if k not in ("HOSTNAME",)}
    env["TONIC_PROBE"] = "1"
    init, why = natives.init(default_root())
    assert init is not None, why
    return dockertree.start(
        docker,
        image,
        [node_binary(), str(program)],
        init=init,
        env=env,
        cwd=str(project),
        copies=copies,
        labels=labels,
    )


def _close(kernel: dockertree.ContainerKernel) -> None:
    if kernel.ours is not None:
        dockertree.close_pipes(kernel.ours)
    kernel.close()


def test_kernel_in_container_looks_like_plain_node(
    api: tuple[dockerapi.Docker, str], labels: dict[str, str], tmp_path: Path
) -> None:
    kernel = _start(api, tmp_path, labels)
    try:
        event, output = _talk(kernel, "hello")
        assert output == b"out 1\n|err 1\n"
        assert event["n"] == 1
        assert event["cwd"] == str(tmp_path)
        assert event["exe"] == os.path.realpath(node_binary())
        assert event["host"] == socket.gethostname()
        host_user = subprocess.run(
            [node_binary(), "-p", "JSON.stringify(require('os').userInfo())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert event["user"] == json.loads(host_user)
        expected_env = [*(k for k in os.environ if k != "HOSTNAME"), "TONIC_PROBE"]
        assert event["env"] == sorted(expected_env)
        assert f"at Object.<anonymous> ({tmp_path}/kernelish.js:" in str(event["stack"])
        assert kernel.pid > 0 and kernel.poll() is None
        ours = kernel.ours
        assert ours is not None
        os.write(ours.cmd, b"exit 5\n")
        assert _drain_to_eof(ours.stdout) == b""
        assert kernel.wait() == 5
    finally:
        _close(kernel)


def test_checkpoint_then_restore_twice_into_new_containers(
    api: tuple[dockerapi.Docker, str], labels: dict[str, str], tmp_path: Path
) -> None:
    docker = api[0]
    project = tmp_path / "project"
    project.mkdir()
    kernel = _start(api, project, labels, layered=True)
    restored: list[dockertree.ContainerKernel] = []
    try:
        (layer,) = docker.labeled_images(labels)
        first, _ = _talk(kernel, "write before")
        snapshot = kernel.checkpoint(tmp_path / "checkpoints", "cell-1", labels=labels)
        assert snapshot.checkpoint == tmp_path / "checkpoints" / "cell-1"
        assert (snapshot.checkpoint / "inventory.img").exists()
        assert set(docker.labeled_images(labels)) == {snapshot.image, layer}
        # The original goes on, and changes its memory and files after the checkpoint.
        later, _ = _talk(kernel, "write after")
        assert (later["n"], later["note"]) == (2, "after")

        for how in ("copy", "link"):
            again = dockertree.restore(docker, snapshot, labels=labels, how=how)
            restored.append(again)
            assert again.container != kernel.container
            event, output = _talk(again, "look")
            # Same memory as at the checkpoint (counter 1, same random), same files.
            assert (event["n"], event["r"], event["note"]) == (2, first["r"], "before")
            assert output == b"out 2\n|err 2\n"
            assert event["stack"] == later["stack"]
        assert len(docker.checkpoints(restored[0].container)) == 1

        # Snapshots of a restored kernel commit only when its files changed.
        same = restored[0].checkpoint(tmp_path / "checkpoints", "cell-2", labels=labels)
        assert same.image == snapshot.image
        _talk(restored[0], "write again")
        # This time through the daemon's own checkpoint call (not runc run directly).
        changed = restored[0].checkpoint(
            tmp_path / "checkpoints", "cell-3", labels=labels, via="docker"
        )
        assert (changed.via, snapshot.via) == ("docker", "runc")
        assert changed.image not in (snapshot.image, layer)
        third = dockertree.restore(docker, changed, labels=labels, how="move")
        restored.append(third)
        event, _ = _talk(third, "look")
        assert (event["n"], event["r"], event["note"]) == (4, first["r"], "again")
        assert not changed.checkpoint.exists()  # moved into the container's own folder
        assert docker.checkpoints(third.container) == ["cell-3"]

        restored[0].kill()
        assert restored[0].wait() == -9
        ours = restored[1].ours
        assert ours is not None
        os.write(ours.cmd, b"exit 7\n")
        assert _drain_to_eof(ours.stdout) == b""
        assert restored[1].wait() == 7
        assert kernel.poll() is None
    finally:
        for each in [kernel, *restored]:
            _close(each)


def test_unreachable_daemon_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(DockerUnreachableError) as caught:
        dockerapi.Docker.connect(timeout=1)
    message = str(caught.value)
    assert "\n" not in message
    assert "unix:///nonexistent/docker.sock" in message and "make docker" in message


def test_daemon_without_experimental_mode_is_refused() -> None:
    docker = dockerapi.Docker(client=None, base_url="unix:///var/run/docker.sock")
    docker._info = {"ExperimentalBuild": False, "DockerRootDir": "/var/lib/docker"}
    with pytest.raises(DockerNotExperimentalError, match="--experimental"):
        docker.check()


def test_init_command_hides_what_the_daemon_adds() -> None:
    command = dockertree.init_command(
        Path("/x/init"), ["node", "-r", "k.js"], {"PATH": "/bin"}, "/x/shim.so", "/usr/bin/node"
    )
    assert command[0] == "/x/init"
    options = command[1 : command.index("--")]
    pairs = {options[i]: options[i + 1] for i in range(0, len(options), 2)}
    assert options[:2] == ["-u", "HOSTNAME"] and "PATH" not in options
    assert pairs["-f"] == dockertree.IPC and pairs["-p"] == "/x/shim.so"
    assert pairs["-x"] == "/usr/bin/node"
    assert command[command.index("--") + 1 :] == ["node", "-r", "k.js"]


def test_image_holds_node_and_its_libraries_at_host_paths() -> None:
    node = os.path.realpath(node_binary())
    fs = dockerimage.rootfs(node)
    assert node.lstrip("/") in fs.sources
    for lib in dockerimage.shared_libraries(node):
        # every library's path resolves inside the image, through the same symlinks
        name = os.path.realpath(lib).lstrip("/")
        assert name in fs.sources, lib
    assert "etc/passwd" in fs.sources
    assert fs.entries["tmp"].mode == 0o1777


class _FailingClient:
    """A low-level client whose checkpoint call fails as dockerd does without CRIU."""

    def _url(self, path: str, *args: str) -> str:
        return path.format(*args)

    def _post_json(self, url: str, data: object) -> None:
        import docker.errors

        raise docker.errors.APIError(
            "500 Server Error",
            explanation="Cannot checkpoint container 62: runc did not terminate "
            'successfully: exit status 1: CRIU version check failed: exec: "criu": '
            "executable file not found in $PATH path= /var/run/x/criu-dump.log: unknown",
        )


def test_missing_criu_on_the_daemon_side_is_one_line() -> None:
    docker = dockerapi.Docker(client=_FailingClient(), base_url="unix:///var/run/docker.sock")
    with pytest.raises(DockerCriuError) as caught:
        docker.checkpoint_create("62", "cell-1")
    message = str(caught.value)
    assert "\n" not in message and "path=" not in message
    assert message.startswith("CRIU does not work on the Docker daemon's side (CRIU version")
    assert "make docker" in message
