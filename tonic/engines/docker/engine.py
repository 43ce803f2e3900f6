"""The docker engine: the notebook runs in a container of its own; after each cell the
container is checkpointed (its memory, with CRIU) and committed (its filesystem), and an
edit resumes in a new container made from the committed image and started from the
checkpoint. Isolation for notebooks a user does not fully trust, with the time travel of
the criu engine: the same keys, store, resume rules and fallbacks (timetravel.py,
snapshots.py).

The container (dockertree.py) holds copies of the notebook's folder (without `.git` and
tonic's cache), tonic's kernel and the clock shim, at their host paths, in an image layer
of their own (so each commit holds only what the notebook changed). Files the notebook
writes stay in the container and travel with its commits; the host's files are never
touched. The key of every snapshot adds the image and the state of the copied folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tonic.engines.base import Availability
from tonic.engines.snapshots import (
    Policy,
    RestoreError,
    finish,
    run_kernel_with_snapshots,
    run_with_snapshots,
)
from tonic.errors import EngineError, TonicError
from tonic.kernel.driver import Program, kernel_argv, kernel_file
from tonic.kernel.pipes import KernelProcess, Pipes
from tonic.kernel.protocol import GO, Command
from tonic.results import RunResult, Sink
from tonic.store import default_root
from tonic.store.ingest import Worker
from tonic.timetravel import fstravel
from tonic.timetravel.planner import Choice, Planner

if TYPE_CHECKING:
    from tonic.engines.docker.api import Docker
    from tonic.engines.docker.tree import ContainerKernel

NOTEBOOK_LABEL = "tonic.notebook"
CACHE_LABEL = "tonic.cache"  # which snapshot cache the container or image belongs to
OWNER_LABEL = "tonic.owner"  # the tonic process running a kernel container: "pid boot-id"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "?"


def _owner() -> str:
    return f"{os.getpid()} {_boot_id()}"


def _owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    pid, _, boot = owner.partition(" ")
    if boot != _boot_id() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def labels(store_root: Path, notebook: Path | None = None) -> dict[str, str]:
    """The labels (besides tonic=1 and the kind) of what a run makes."""
    found = {CACHE_LABEL: _short(str(store_root.resolve()))}
    if notebook is not None:
        found[NOTEBOOK_LABEL] = _short(str(notebook))
    return found


def _connect() -> Docker:
    from tonic.engines.docker.api import Docker  # the docker SDK takes ~100 ms to import

    return Docker.connect()


HASHED_FILE = 1 << 20  # bigger files count by size and modification time


def project_state(project: Path, notebook: Path, skip: frozenset[Path]) -> str:
    """A digest of what the container gets of the notebook's folder besides the notebook
    (node_modules counts in the key by its lock file): every file's path and content."""
    found = fstravel.scan(project, skip) or {}
    h = hashlib.sha256()
    for rel in sorted(found):
        st = found[rel]
        if project / rel == notebook:
            continue
        h.update(f"{rel}\0{st.size}\0".encode())
        try:
            if st.size > HASHED_FILE:
                raise OSError
            h.update(hashlib.sha256((project / rel).read_bytes()).digest())
        except OSError:
            h.update(f"{st.mtime_ns}".encode())
    return h.hexdigest()


class DockerEngine:
    name = "docker"
    description = (
        "a container per notebook, checkpointed (CRIU) and committed after every cell; "
        "files stay in the container"
    )

    def __init__(self, image: str | None = None) -> None:
        self.image = image  # None: tonic's own, built from this machine's node

    def availability(self) -> Availability:
        try:
            from tonic.engines.docker import image as dockerimage

            api = _connect()
            try:
                built = dockerimage.ready(api)
            finally:
                api.close()
        except TonicError as err:
            return Availability(False, str(err))
        return Availability(True, f"Docker daemon with checkpoints, image {built.tag}")

    def planner(self, program: Program, image: str | None = None) -> Planner:
        """The snapshots' keys and lookup for `program` in `image` (the id; default: this
        engine's image, asked of the daemon)."""
        if image is None:
            api = _connect()
            try:
                image, _ = _image(api, self.image)
            finally:
                api.close()
        state = project_state(program.path.parent, program.path, frozenset({default_root()}))
        return Planner(
            program, engine=self.name, files=False, extra_key={"image": image, "project": state}
        )

    def run(self, program: Program, sink: Sink, *, timeout: float | None = None) -> RunResult:
        api = _connect()
        try:
            image, node = _image(api, self.image)
            planner = self.planner(program, image)

            def attempt(choice: Choice | None, out: Sink, continued: bool) -> RunResult:
                return _Run(api, image, node, planner, choice).run(out, timeout, continued)

            return run_with_snapshots(planner, sink, attempt)
        finally:
            api.close()


def _image(api: Docker, wanted: str | None) -> tuple[str, str | None]:
    """(image id, node's path in it: None for the host's own, in tonic's default image)."""
    from tonic.engines.docker import image as dockerimage
    from tonic.errors import DockerError

    if not wanted:
        return dockerimage.ready(api).image, None
    api.check()
    image = api.image_id(wanted)
    if image is None:
        raise DockerError(
            f"no image {wanted!r} on the Docker daemon (no registry may be reachable: "
            "`docker load` or `docker import` it first)"
        )
    api.check_criu(image, ["node", "-e", "setInterval(() => {}, 1 << 30)"])
    return image, "node"


class _Run:
    """One kernel run in a container: fresh, or restored from `choice`."""

    def __init__(
        self, api: Docker, image: str, node: str | None, planner: Planner, choice: Choice | None
    ):
        self.api = api
        self.image = image
        self.node = node  # None: the host's node, at the same path
        self.planner = planner
        self.choice = choice
        # Whose run it is: gc removes a kernel container whose tonic was killed.
        self.labels = {**labels(planner.store.root, planner.program.path), OWNER_LABEL: _owner()}
        self.kernel: ContainerKernel | None = None
        self.restore_seconds = 0.0
        self.restore_parts: dict[str, float] = {}
        self.dump_seconds: list[float] = []
        self.failed: str | None = None
        self.policy = Policy(planner)
        self.worker = Worker(planner.store.root, planner.program.path)

    def launch(self, prog: Program, _pipes: Pipes, env: dict[str, str]) -> KernelProcess:
        from tonic.engines.docker import tree as dockertree

        if self.choice is None:
            copies: list[Path | str] = [prog.path.parent, kernel_file("kernel.js")]
            preload = env.get("LD_PRELOAD")
            if preload:
                copies += [p for p in preload.split(":") if os.path.isfile(p)]
            layer = dockertree.layer(
                self.api,
                self.image,
                copies,
                labels=self.labels,
                skip=frozenset({str(self.planner.store.root.resolve())}),
            )
            argv = kernel_argv(prog)
            if self.node is not None:
                argv[0] = self.node
            self.kernel = dockertree.start(
                self.api,
                layer,
                argv,
                env=env,
                cwd=os.getcwd(),
                copies=[env["TONIC_KERNEL_PLAN"]],
                labels=self.labels,
            )
            # The container has its own copy of the plan: a tonic killed from here on
            # leaves nothing of it in the host's temporary folder.
            shutil.rmtree(Path(env["TONIC_KERNEL_PLAN"]).parent, ignore_errors=True)
            return self.kernel
        record = self.choice.record
        started = time.monotonic()
        try:
            with self.planner.images(self.choice) as (images, _):
                snapshot = dockertree.Snapshot(
                    record.engine["image"],
                    images,
                    record.engine.get("hostname") or socket.gethostname(),
                )
                self.kernel = dockertree.restore(self.api, snapshot, labels=self.labels, how="copy")
        except (EngineError, KeyError) as err:
            raise RestoreError(f"the snapshot after cell {self.choice.pause}: {err}") from None
        self.restore_seconds = time.monotonic() - started
        self.restore_parts = dict(self.kernel.seconds)
        return self.kernel

    def channels(self, _proc: KernelProcess) -> Pipes:
        assert self.kernel is not None and self.kernel.ours is not None
        return self.kernel.ours

    def on_pause(self, k: int) -> Command:
        record = self.planner.record_at(k)
        if record is None or self.failed is not None or not self.policy.due(k):
            return GO
        assert self.kernel is not None
        folder = Path(self.planner.staging()) / f"docker-{os.getpid()}-{time.monotonic_ns()}"
        try:
            snap = self.kernel.checkpoint(folder.parent, folder.name, labels=self.labels)
            self.dump_seconds.append(snap.seconds.get("total", 0.0))
            record.engine = {"image": snap.image, "hostname": snap.hostname}
            self.worker.submit(record.snapshot_id, record.key, folder, record.meta())
        except (EngineError, OSError) as err:
            self.failed = f"snapshots stopped at cell {k}: {err}"
        return GO

    def run(self, sink: Sink, timeout: float | None, stop_on_error: bool) -> RunResult:
        planner = self.planner
        choice = self.choice
        try:
            result = run_kernel_with_snapshots(
                planner,
                sink,
                choice,
                engine=DockerEngine.name,
                timeout=timeout,
                stop_on_error=stop_on_error,
                on_pause=self.on_pause,
                launcher=self.launch,
                channels=self.channels,
                # The clock shim is built against this machine's C library only.
                shim=self.node is None,
            )
        finally:
            self.worker.release()
            if self.kernel is not None:
                self.kernel.close()
        result.stats = {
            "dump_seconds": self.dump_seconds,
            "restore_seconds": self.restore_seconds if choice is not None else None,
            "restore_parts": self.restore_parts,
        }
        return finish(planner, result, choice, self.restore_seconds, self.failed)


def collect_garbage(
    store_root: Path, live_images: set[str], *, everything: bool = False
) -> tuple[int, int]:
    """Remove the containers the docker engine left for this cache (a killed run's), and
    its snapshot and project-layer images no stored snapshot needs (all of them when
    `everything`); the base image stays. (containers, images) removed; (0, 0) when no
    daemon answers."""
    from tonic.engines.docker.api import KIND
    from tonic.errors import DockerError

    if not _daemon_likely():
        return 0, 0
    try:
        api = _connect()
    except DockerError:
        return 0, 0
    ours = labels(store_root)
    try:
        containers = 0
        fifo_dirs: set[str] = set()
        for container in api.labeled_containers({KIND: "kernel", **ours}):
            details = api.inspect(container)
            running = bool(details.get("State", {}).get("Running"))
            owner = (details.get("Config", {}).get("Labels") or {}).get(OWNER_LABEL)
            if everything or not running or not _owner_alive(owner):
                api.remove_container(container)
                containers += 1
            else:
                fifo_dirs.update(str(m.get("Source")) for m in details.get("Mounts") or [])
        _sweep_fifo_dirs(fifo_dirs)
        doomed = [
            image
            for kind in ("snapshot", "files")
            for image in api.labeled_images({KIND: kind, **ours})
            if everything or image not in live_images
        ]
        images = 0
        while doomed:  # children before parents: retried while any removal succeeds
            left = []
            for image in doomed:
                try:
                    api.remove_image(image)
                    images += 1
                except DockerError:
                    left.append(image)  # a parent of an image still there
            if len(left) == len(doomed):
                break
            doomed = left
        return containers, images
    finally:
        api.close()


def _daemon_likely() -> bool:
    """Whether a daemon may answer (no 5 s connection timeout when there is none)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return not host.startswith("unix://") or os.path.exists(host[len("unix://") :])


def _sweep_fifo_dirs(in_use: set[str]) -> None:
    """Remove the kernels' FIFO folders (dockertree.py) that no container uses and that
    are older than a minute (a killed tonic leaves its own behind)."""
    stale = time.time() - 60
    for folder in Path(tempfile.gettempdir()).glob("tonic-ipc-*"):
        with contextlib.suppress(OSError):
            if str(folder) not in in_use and folder.stat().st_mtime < stale:
                shutil.rmtree(folder, ignore_errors=True)
