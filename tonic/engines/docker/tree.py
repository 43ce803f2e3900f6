"""The tonic kernel inside a Docker container, as criu/tree.py runs it on the host:
started fresh, checkpointed at a pause (CRIU through the daemon, plus a commit of the
container's filesystem), and restored into a new container.

tonic reads and writes the kernel's channels on its own fds; the kernel sees them on fds
1 (stdout), 2 (stderr), 3 (commands) and 4 (events). Across the container boundary they
are named FIFOs in a small host directory, bind-mounted at `IPC` in the container. The
container's init is tonic's init (kernel/init.c, copied in at its host path; so node is
not PID 1: signals and `process.kill` behave as on the host). It opens the FIFOs onto
fds 4, 1, 2, its status FIFO, then 3, runs node as its child with stdin /dev/null, prints
nothing and says on the status FIFO how node ended (nsinit.py). tonic opens its read
ends first (non-blocking, so the init's opens do not wait), then the command FIFO's
write end, which succeeds only once the init has opened its read end, after all its
write ends: no read of tonic's sees an end of file before the kernel exists. CRIU
reopens the FIFOs by path at a restore; the new container mounts a fresh FIFO directory
there.

The files the kernel needs (the notebook's directory, kernel.js, the plan, the clock
shim) are copied into the container at the same absolute paths as on the host
(copies.py), so stack traces read as under plain node; cwd, environment, user and
hostname are the host's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tonic.engines.docker import host as dockerhost
from tonic.engines.docker.api import Docker, Mount
from tonic.engines.docker.copies import Placement, pack, place_checkpoint, startup_files
from tonic.errors import DockerError
from tonic.kernel.nsinit import InitStatus, init_argv
from tonic.kernel.pipes import Pipes

IPC = "/run/tonic-ipc"  # the FIFO directory's place in the container
FIFOS = ("events", "stdout", "stderr", "status", "cmd")
OPEN_TIMEOUT = 30.0  # seconds for the container's init to open its FIFOs
# Variables the daemon adds to a container's environment when it has none.
DAEMON_ENV = ("PATH", "HOSTNAME")

Via = Literal["auto", "runc", "docker"]


def init_command(
    init: Path,
    argv: list[str],
    env: dict[str, str],
    preload: str | None,
    node: str | None,
    merged: bool = False,
) -> list[str]:
    """The container's command: tonic's init on the FIFOs, starting node (`argv`; the
    file run is `node`, if not argv[0]) with LD_PRELOAD for node only, without the
    variables the daemon adds when `env` has none; `merged`: stderr is stdout's FIFO
    (tonic's stdout and stderr are one; the stderr FIFO, never opened for writing,
    reads as ended)."""
    unset = [name for name in DAEMON_ENV if name not in env]
    command = init_argv(init, argv, executable=node, fifos=IPC, merged=merged, preload=preload)
    for name in unset:
        command[1:1] = ["-u", name]
    return command


def close_pipes(pipes: Pipes) -> None:
    for fd in (pipes.cmd, pipes.events, pipes.stdout, pipes.stderr):
        os.close(fd)


def _fifo_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="tonic-ipc-"))
    for name in FIFOS:
        os.mkfifo(directory / name, 0o600)
    return directory


def _open_readers(directory: Path) -> tuple[int, int, int, int]:
    """tonic's read ends: events, stdout, stderr, status."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    fds = [os.open(directory / name, flags) for name in ("events", "stdout", "stderr", "status")]
    return fds[0], fds[1], fds[2], fds[3]


@dataclass
class Snapshot:
    """A checkpoint of a kernel container: its memory (CRIU images under `checkpoint`,
    a folder on this machine) and filesystem (the committed `image`)."""

    image: str
    checkpoint: Path
    hostname: str
    seconds: dict[str, float] = field(default_factory=dict)
    via: str = "docker"  # who wrote the checkpoint: the daemon, or runc directly


@dataclass
class Prepared:
    """A created, not yet started, container with its FIFO directory."""

    container: str
    fifo_dir: Path
    seconds: float = 0.0


class ContainerKernel:
    """A kernel container, as a driver's KernelProcess: `pid` is the init's host pid;
    `ours` are tonic's ends of the FIFOs (the caller closes them)."""

    def __init__(self, api: Docker, prepared: Prepared, hostname: str) -> None:
        self.api = api
        self.container = prepared.container
        self.fifo_dir = prepared.fifo_dir
        self.hostname = hostname
        self.ours: Pipes | None = None
        self.status: InitStatus | None = None
        self._pid = 0
        self.seconds: dict[str, float] = {}
        # The image holding the files of the last snapshot (or of the restored one), and
        # the signature of the container's own changes at that moment.
        self.image: str | None = None
        self._files: tuple[str | None, str | None] = (None, None)

    @property
    def pid(self) -> int:
        return self._pid

    def _started(self) -> None:
        self._pid = int(self.api.state(self.container).get("Pid") or 0)

    def _connect(self, readers: tuple[int, int, int, int]) -> None:
        """Open the command FIFO's write end once the kernel side has its read end."""
        events, stdout, stderr, status = readers
        deadline = time.monotonic() + OPEN_TIMEOUT
        checked = time.monotonic()
        while True:
            try:
                cmd = os.open(self.fifo_dir / "cmd", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as err:
                if err.errno != errno.ENXIO:
                    raise DockerError(f"cannot open the kernel's command FIFO: {err}") from None
            now = time.monotonic()
            if now - checked > 0.1:
                checked = now
                state = self.api.state(self.container)
                if not (state.get("Running") or state.get("Status") == "created"):
                    raise DockerError(
                        f"the kernel container exited (status {state.get('ExitCode')}) "
                        "before opening its channels"
                    )
            if now > deadline:
                raise DockerError("the kernel container did not open its channels in time")
            time.sleep(0.001)
        self.ours = Pipes(cmd=cmd, events=events, stdout=stdout, stderr=stderr)
        self.status = InitStatus(status)

    def poll(self) -> int | None:
        """node's status, from the init (None while node runs)."""
        return None if self.status is None else self.status.poll()

    def wait(self) -> int:
        assert self.status is not None
        return self.status.wait()

    def kill(self) -> None:
        if self.poll() is None:
            self.api.kill(self.container)

    def files_signature(self) -> str | None:
        """A digest of the container's own file changes (names, types, sizes, mtimes),
        to tell whether its filesystem changed since the last snapshot; None if unknown."""
        layers = self.api.layers(self.container)
        return None if layers is None else dockerhost.files_signature(*layers)

    def checkpoint(
        self,
        directory: Path,
        name: str,
        *,
        commit: bool | None = None,
        labels: dict[str, str] | None = None,
        via: Via = "auto",
    ) -> Snapshot:
        """Checkpoint the running kernel (it goes on running) into `directory/name`, and
        commit its filesystem as a labeled image. `commit` None: only when the files
        changed since the last snapshot (or the restore) of this container; else the
        snapshot reuses that image. `via`: the daemon's checkpoint call, runc run
        directly (about 4x faster, see host.py), or "auto": runc where it can.

        With runc, the container is paused (frozen) around the dump and the commit: its
        files and memory are taken at the same instant, and CRIU finds the cgroup frozen
        already (freezing it itself costs it a 100 ms poll on cgroup v1)."""
        prefix: list[str] | None = None
        if via != "docker":
            prefix, why = dockerhost.usable(self.api, self.container)
            if prefix is None and via == "runc":
                raise DockerError(f"cannot checkpoint with runc directly: {why}")
        started = time.monotonic()
        if prefix is not None:
            self.api.pause(self.container)
        try:
            if prefix is not None:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                dockerhost.checkpoint(prefix, self.container, directory / name)
            else:
                self.api.checkpoint_create(
                    self.container, name, leave_running=True, directory=directory
                )
            dumped = time.monotonic()
            image = self._commit(commit, labels, pause=prefix is None)
        except BaseException:
            # What stopped the checkpoint (SIGTERM's SystemExit, Ctrl-C) goes on: an
            # unpause that fails after a checkpoint cut short must not take its place.
            if prefix is not None:
                with contextlib.suppress(DockerError):
                    self.api.unpause(self.container)
            raise
        if prefix is not None:
            self.api.unpause(self.container)
        done = time.monotonic()
        return Snapshot(
            image,
            directory / name,
            self.hostname,
            {"checkpoint": dumped - started, "commit": done - dumped, "total": done - started},
            via="docker" if prefix is None else "runc",
        )

    def _commit(self, commit: bool | None, labels: dict[str, str] | None, pause: bool) -> str:
        """The image of the container's files now: a new commit, or the last one when
        nothing changed since (commit None) or when told not to (commit False)."""
        signature = self.files_signature() if commit is None else None
        unchanged = signature is not None and self._files == (signature, self.image)
        if commit is False or (commit is None and unchanged):
            if self.image is None:
                raise DockerError("a snapshot without a commit needs an earlier one")
            image = self.image
        else:
            image = self.api.commit(self.container, labels=labels, pause=pause)
            self.image = image
        self._files = (signature, image)
        return image

    def close(self) -> None:
        """Remove the container (killing it) and its FIFO directory; not tonic's fds
        (but the status FIFO's, which is the kernel's own)."""
        if self.status is not None:
            self.status.close()
        self.api.remove_container(self.container)
        shutil.rmtree(self.fifo_dir, ignore_errors=True)


def start(
    api: Docker,
    image: str,
    argv: list[str],
    *,
    init: Path,
    node: str | None = None,
    env: dict[str, str],
    cwd: str,
    copies: Sequence[Path | str] = (),
    labels: dict[str, str] | None = None,
    hostname: str | None = None,
    merged: bool = False,
) -> ContainerKernel:
    """Run `argv` (node -r kernel.js FILE ARGS; the file run is `node`, if not argv[0])
    in a new container from `image` under tonic's `init`, with `copies` (host files and
    directories) at their own paths, the environment `env` (LD_PRELOAD in it goes to
    node only), cwd `cwd`, the host's user and hostname; `merged`: one FIFO for stdout
    and stderr."""
    env = dict(env)
    preload = env.pop("LD_PRELOAD", None)
    hostname = hostname or socket.gethostname()
    copies = [*copies, init, *startup_files(env)]
    t0 = time.monotonic()
    fifo_dir = _fifo_dir()
    try:
        container = api.create(
            image,
            init_command(init, argv, env, preload, node, merged),
            kind="kernel",
            labels=labels,
            env=env,
            cwd=cwd,
            hostname=hostname,
            mounts=(Mount(str(fifo_dir), IPC),),
            user=f"{os.getuid()}:{os.getgid()}",
        )
    except BaseException:
        shutil.rmtree(fifo_dir, ignore_errors=True)
        raise
    kernel = ContainerKernel(api, Prepared(container, fifo_dir), hostname)
    readers: tuple[int, int, int, int] | None = None
    try:
        t1 = time.monotonic()
        if copies:
            with tempfile.TemporaryDirectory(prefix="tonic-copy-") as tmp:
                tar = Path(tmp) / "files.tar"
                pack(copies, tar)
                api.put_archive(container, "/", tar.read_bytes())
        t2 = time.monotonic()
        readers = _open_readers(fifo_dir)
        api.start(container)
        t3 = time.monotonic()
        kernel._connect(readers)
        kernel._started()
        t4 = time.monotonic()
    except BaseException:
        if readers is not None and kernel.ours is None:
            for fd in readers:
                os.close(fd)
        kernel.close()
        raise
    kernel.seconds = {"create": t1 - t0, "copy": t2 - t1, "start": t3 - t2, "open": t4 - t3}
    return kernel


def layer(
    api: Docker,
    image: str,
    copies: Sequence[Path | str],
    *,
    labels: dict[str, str] | None = None,
    kind: str = "files",
    skip: frozenset[str] = frozenset(),
) -> str:
    """A labeled image: `image` plus host `copies` at their own paths (without the
    directories in `skip`). Started from it, a kernel's snapshots commit only what the
    notebook changed, not the copies again."""
    container = api.create(image, ["/bin/sh"], kind="layer", labels=labels)
    try:
        with tempfile.TemporaryDirectory(prefix="tonic-copy-") as tmp:
            tar = Path(tmp) / "files.tar"
            pack(copies, tar, skip)
            api.put_archive(container, "/", tar.read_bytes())
        return api.commit(container, kind=kind, labels=labels, pause=False)
    finally:
        api.remove_container(container)


def prepare(api: Docker, snapshot: Snapshot, labels: dict[str, str] | None = None) -> Prepared:
    """Create the container a restore of `snapshot` starts (it can be made ahead of time)."""
    started = time.monotonic()
    fifo_dir = _fifo_dir()
    try:
        container = api.create(
            snapshot.image,
            [],
            kind="kernel",
            labels=labels,
            hostname=snapshot.hostname,
            mounts=(Mount(str(fifo_dir), IPC),),
            user=f"{os.getuid()}:{os.getgid()}",
        )
    except BaseException:
        shutil.rmtree(fifo_dir, ignore_errors=True)
        raise
    return Prepared(container, fifo_dir, time.monotonic() - started)


def restore(
    api: Docker,
    snapshot: Snapshot,
    *,
    labels: dict[str, str] | None = None,
    prepared: Prepared | None = None,
    how: Placement = "link",
) -> ContainerKernel:
    """Start a new container (`prepared`, or one made now) from `snapshot`: its image,
    and its checkpoint placed in the container's own checkpoint folder (the daemon
    refuses a custom one at start). The kernel continues where it was checkpointed."""
    created = 0.0
    if prepared is None:
        prepared = prepare(api, snapshot, labels)
        created = prepared.seconds
    kernel = ContainerKernel(api, prepared, snapshot.hostname)
    name = snapshot.checkpoint.name
    readers: tuple[int, int, int, int] | None = None
    try:
        t1 = time.monotonic()
        placed = api.container_checkpoints(prepared.container) / name
        place_checkpoint(snapshot.checkpoint, placed, how)
        # The daemon uploads the folder to containerd as a tar, which fails ("content
        # ...: already exists", moby#42900) when the same bytes are still stored: a
        # checkpoint the daemon made itself is that tar, left until containerd's next
        # garbage collection. A file of this restore's own makes every upload new.
        (placed / "tonic-restore").write_text(f"{os.getpid()} {time.time_ns()}\n")
        t2 = time.monotonic()
        # All of tonic's ends before the restore: a restored thread that writes must not
        # find a FIFO without readers (EPIPE), and the kernel, restored in its read(2)
        # on the command FIFO, must not find it without writers (an end of file). The
        # command FIFO is opened read-write: a FIFO's write end cannot be opened alone
        # before it has a reader.
        readers = _open_readers(prepared.fifo_dir)
        cmd = os.open(prepared.fifo_dir / "cmd", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        kernel.ours = Pipes(cmd=cmd, events=readers[0], stdout=readers[1], stderr=readers[2])
        kernel.status = InitStatus(readers[3])
        inventory = (placed / "inventory.img").read_bytes()
        wall = time.time()
        try:
            api.start(prepared.container, checkpoint=name)
            t3 = time.monotonic()
        finally:
            swept = time.monotonic()
            dockerhost.sweep_restore_copies(inventory, wall)
            swept = time.monotonic() - swept
        kernel._started()
        kernel.image = snapshot.image
        kernel._files = (kernel.files_signature(), snapshot.image)
        t4 = time.monotonic()
    except BaseException:
        if kernel.ours is not None:
            close_pipes(kernel.ours)
        elif readers is not None:
            for fd in readers:
                os.close(fd)
        kernel.close()  # the status reader too
        raise
    kernel.seconds = {
        "create": created,
        "place": t2 - t1,
        "start": t3 - t2,
        "sweep": swept,
        "open": t4 - t3 - swept,
    }
    return kernel
