"""The docker engine: the notebook runs in a container of its own; after each cell the
container is checkpointed (its memory, with CRIU) and committed (its filesystem), and an
edit resumes in a new container made from the committed image and started from the
checkpoint. Isolation for notebooks a user does not fully trust, with the time travel of
the criu engine: the same keys, store, resume rules and fallbacks (timetravel/,
snapshots.py).

The container (tree.py) holds copies of the notebook's folder (without `.git` and
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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tonic.engine_catalog import DESCRIPTIONS
from tonic.engines import natives
from tonic.engines.backend import Session
from tonic.engines.base import Availability
from tonic.engines.docker.labels import OWNER_LABEL, labels, owner
from tonic.engines.images import Images
from tonic.errors import DockerError, TonicError
from tonic.kernel.driver import Program, kernel_argv, kernel_file
from tonic.kernel.pipes import KernelProcess, Pipes
from tonic.settings import node_argv0
from tonic.store import Store
from tonic.timetravel.choose import Choice
from tonic.timetravel.deps import env_digest
from tonic.timetravel.records import SnapshotRecord

if TYPE_CHECKING:
    from tonic.engines.docker.api import Docker
    from tonic.engines.docker.tree import ContainerKernel


def _connect() -> Docker:
    from tonic.engines.docker.api import Docker  # the docker SDK takes ~100 ms to import

    return Docker.connect()


HASHED_FILE = 1 << 20  # bigger files count by size and modification time


SKIP_DIRS = frozenset({"node_modules", ".git"})


def _files(root: Path, skip: frozenset[Path]) -> dict[str, os.stat_result]:
    """Every regular file under root, outside node_modules and dot-folders."""
    found: dict[str, os.stat_result] = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if path in skip:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIP_DIRS and not entry.name.startswith("."):
                        stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    found[str(path.relative_to(root))] = entry.stat(follow_symlinks=False)
            except OSError:
                continue
    return found


def project_state(project: Path, notebook: Path, skip: frozenset[Path]) -> str:
    """A digest of what the container gets of the notebook's folder besides the notebook
    (node_modules counts in the key by its lock file): every file's path and content."""
    found = _files(project, skip)
    h = hashlib.sha256()
    for rel in sorted(found):
        st = found[rel]
        if project / rel == notebook:
            continue
        h.update(f"{rel}\0{st.st_size}\0".encode())
        try:
            if st.st_size > HASHED_FILE:
                raise OSError
            h.update(hashlib.sha256((project / rel).read_bytes()).digest())
        except OSError:
            h.update(f"{st.st_mtime_ns}".encode())
    return h.hexdigest()


def surroundings(program: Program) -> dict[str, str]:
    """The container's environment and working directory, and whether values are
    inspected: in the key (docker's kernels are not observed)."""
    env = {k: v for k, v in program.env.items() if not k.startswith("TONIC_")}
    env.pop("_", None)
    env.pop("OLDPWD", None)
    return {"env": env_digest(env), "cwd": str(program.cwd), "inspect": str(program.inspect)}


class DockerBackend:
    name = "docker"
    description = DESCRIPTIONS[name]

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

    @contextlib.contextmanager
    def open(self, program: Program, store: Store) -> Iterator[Session]:
        """A connection to the daemon and the image, for one `tonic run`. The keys add
        the image and the project folder's state; the files stay in the container, and
        the clock shim only fits tonic's own image (built on this machine's C library)."""
        api = _connect()
        try:
            image, node = _image(api, self.image)
            state = project_state(program.path.parent, program.path, frozenset({store.root}))
            tags = {**labels(store.root, program.path), OWNER_LABEL: owner()}
            yield Session(
                kernel=lambda: DockerKernel(api, image, node, tags, store.root),
                key={"image": image, "project": state, **surroundings(program)},
                files=False,
                shim=node is None,
                channels=True,
                terminals=False,
            )
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


class DockerKernel:
    """One kernel run in a container: fresh, or restored from a snapshot."""

    def __init__(
        self, api: Docker, image: str, node: str | None, tags: dict[str, str], store_root: Path
    ) -> None:
        self.api = api
        self.image = image
        self.node = node  # None: the host's node, at the same path
        # Whose run it is: gc removes a kernel container whose tonic was killed.
        self.labels = tags
        self.store_root = store_root
        self.kernel: ContainerKernel | None = None
        self.restore_parts: dict[str, float] = {}
        self.dump_seconds: list[float] = []

    def launch(self, program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
        from tonic.engines.docker import tree as dockertree

        copies: list[Path | str] = [program.path.parent, kernel_file("kernel.js")]
        preload = env.get("LD_PRELOAD")
        if preload:
            copies += [p for p in preload.split(":") if os.path.isfile(p)]
        layer = dockertree.layer(
            self.api,
            self.image,
            copies,
            labels=self.labels,
            skip=frozenset({str(self.store_root.resolve())}),
        )
        node, *rest = kernel_argv(program)
        init, why = natives.init(self.store_root)
        if init is None:
            raise DockerError(f"the docker engine cannot run here: {why}")
        self.kernel = dockertree.start(
            self.api,
            layer,
            [self.node or node_argv0(), *rest],
            init=init,
            node=None if self.node else node,
            env=env,
            cwd=str(program.cwd),
            copies=[env["TONIC_KERNEL_PLAN"]],
            labels=self.labels,
            merged=program.stdio.merged,
        )
        # The container has its own copy of the plan: a tonic killed from here on
        # leaves nothing of it in the host's temporary folder.
        shutil.rmtree(Path(env["TONIC_KERNEL_PLAN"]).parent, ignore_errors=True)
        return self.kernel

    def restore(
        self,
        choice: Choice,
        images: Images,
        pipes: Pipes,
        env: dict[str, str],
        *,
        held: bool = False,
    ) -> KernelProcess:
        from tonic.engines.docker import tree as dockertree

        if held:  # (its session makes its own channels: it keeps no standby)
            raise DockerError("a docker kernel is not restored to be held")
        images.check()  # the daemon copies the images: a damaged copy must not reach it
        record = choice.record
        snapshot = dockertree.Snapshot(
            record.engine["image"],
            images.files,
            record.engine.get("hostname") or socket.gethostname(),
        )
        self.kernel = dockertree.restore(self.api, snapshot, labels=self.labels, how="copy")
        self.restore_parts = dict(self.kernel.seconds)
        return self.kernel

    def checkpoint(self, record: SnapshotRecord, folder: Path) -> None:
        assert self.kernel is not None
        snap = self.kernel.checkpoint(folder.parent, folder.name, labels=self.labels)
        self.dump_seconds.append(snap.seconds.get("total", 0.0))
        record.engine = {"image": snap.image, "hostname": snap.hostname}

    def resume(self) -> None:
        pass  # (never held)

    def tree_pid(self) -> int | None:
        return None  # in the container's namespaces: its key covers what it may use

    def channels(self, _proc: KernelProcess) -> Pipes:
        assert self.kernel is not None and self.kernel.ours is not None
        return self.kernel.ours

    def close(self) -> dict[str, object]:
        if self.kernel is not None:
            self.kernel.close()
        return {"dump_seconds": self.dump_seconds, "restore_parts": self.restore_parts}
