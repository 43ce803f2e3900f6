"""Clean-up of the docker engine's containers and images (`tonic cache gc` and `clear`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tonic.engines.docker.labels import OWNER_LABEL, labels, owner_alive
from tonic.errors import DockerError

if TYPE_CHECKING:
    from tonic.engines.docker.api import Docker


def collect_garbage(
    store_root: Path, live_images: set[str], *, everything: bool = False
) -> tuple[int, int]:
    """Remove the containers the docker engine left for this cache (a killed run's), and
    its snapshot and project-layer images no stored snapshot needs (all of them when
    `everything`); the base image stays. (containers, images) removed; (0, 0) when no
    daemon answers."""
    from tonic.engines.docker.api import KIND, Docker  # the docker SDK takes ~100 ms

    if not _daemon_likely():
        return 0, 0
    try:
        api = Docker.connect()
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
            if everything or not running or not owner_alive(owner):
                api.remove_container(container)
                containers += 1
            else:
                fifo_dirs.update(str(m.get("Source")) for m in details.get("Mounts") or [])
        _sweep_fifo_dirs(fifo_dirs)
        doomed = _doomed(api, ours, set() if everything else live_images)
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


def image_bytes(store_root: Path, *, doomed_but: set[str] | None = None) -> int | None:
    """Bytes of the docker engine's images of this cache (each image's own layer: its
    size less its parent's); with `doomed_but`, only of those collect_garbage would
    remove when the stored snapshots need those images. None when no daemon answers."""
    from tonic.engines.docker.api import Docker

    if not _daemon_likely():
        return None
    try:
        api = Docker.connect()
    except DockerError:
        return None
    ours = labels(store_root)
    try:
        images = api.labeled_images(ours) if doomed_but is None else _doomed(api, ours, doomed_but)
        total = 0
        for image in images:
            size, parent = api.image_size(image)
            total += size - (api.image_size(parent)[0] if parent else 0)
        return max(total, 0)
    except DockerError:
        return None
    finally:
        api.close()


def _doomed(api: Docker, ours: dict[str, str], live_images: set[str]) -> list[str]:
    """This cache's snapshot and project-layer images that no stored snapshot needs,
    itself or as a parent (a snapshot's image is made on its project layer)."""
    from tonic.engines.docker.api import KIND

    needed: set[str] = set()
    for image in live_images:
        while image and image not in needed:
            needed.add(image)
            image = api.image_size(image)[1]
    return [
        image
        for kind in ("snapshot", "files")
        for image in api.labeled_images({KIND: kind, **ours})
        if image not in needed
    ]


def _daemon_likely() -> bool:
    """Whether a daemon may answer (no 5 s connection timeout when there is none)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return not host.startswith("unix://") or os.path.exists(host[len("unix://") :])


def _sweep_fifo_dirs(in_use: set[str]) -> None:
    """Remove the kernels' FIFO folders (tree.py) that no container uses and that
    are older than a minute (a killed tonic leaves its own behind)."""
    stale = time.time() - 60
    for folder in Path(tempfile.gettempdir()).glob("tonic-ipc-*"):
        with contextlib.suppress(OSError):
            if str(folder) not in in_use and folder.stat().st_mtime < stale:
                shutil.rmtree(folder, ignore_errors=True)
