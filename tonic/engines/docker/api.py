"""The calls the docker engine makes on the Docker Engine API, on a connection to the
daemon (daemon.py): containers, checkpoints, images, and everything tonic made.

docker-py has no checkpoint calls: they are made here on the client's own HTTP session,
against the experimental endpoints (`/containers/{id}/checkpoints`, start with a
checkpoint). Everything tonic creates carries the label `tonic=1` and a `tonic.kind`
(`base` and `files` images, `snapshot` images, `kernel`, `layer` and `probe` containers), so
that it can be listed and removed (`remove_labeled`). Failures are one-line `DockerError`s.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import docker.types

from tonic.engines.docker.daemon import START_HINT, Daemon, calling, explain
from tonic.errors import DockerCriuError, DockerError
from tonic.store import private_file

LABEL = "tonic"
KIND = "tonic.kind"
CRIU_MEMO = "docker-criu-check.txt"
MEMO_SECONDS = 86400.0
CRIU_HINT = f"dockerd needs CRIU >= 4 first on its PATH: stop it and {START_HINT}"


def labels_for(kind: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The labels of something tonic makes: `tonic=1`, its kind, and `extra`."""
    return {LABEL: "1", KIND: kind, **(extra or {})}


def _label_filter(labels: dict[str, str] | None) -> list[str]:
    return [f"{k}={v}" for k, v in {LABEL: "1", **(labels or {})}.items()]


def _criu_problem(message: str) -> bool:
    low = message.lower()
    return "criu" in low and any(
        hint in low for hint in ("not found", "executable file", "version", "no such file", "vdso")
    )


@dataclass(frozen=True)
class Mount:
    """A host directory bind-mounted into a container."""

    source: str
    target: str
    read_only: bool = False


class Docker(Daemon):
    """A connection to the local Docker daemon, and the calls tonic makes on it."""

    def _criu_stamp(self, image: str) -> str:
        info = self.info()
        runc = info.get("RuncCommit") or {}
        return " ".join(
            str(x)
            for x in (
                info.get("ID"),
                info.get("ServerVersion"),
                runc.get("ID") if isinstance(runc, dict) else runc,
                os.uname().release,
                image,
            )
        )

    def check_criu(self, image: str, command: list[str]) -> None:
        """CRIU works on the daemon's side: checkpoint a small labeled container running
        `command` from `image`. A success is remembered for a day per daemon, runc,
        kernel and image (the probe takes about a second)."""
        memo = private_file(CRIU_MEMO)
        stamp = self._criu_stamp(image)
        try:
            if (
                memo.read_text().strip() == stamp
                and time.time() - memo.stat().st_mtime < MEMO_SECONDS
            ):
                return
        except OSError:
            pass
        container = self.create(image, command, kind="probe")
        try:
            self.start(container)
            for attempt in range(3):
                try:
                    self.checkpoint_create(container, "probe", leave_running=False)
                    break
                except DockerCriuError:
                    raise
                except DockerError as err:
                    # runc's freezer can fail on a container that has just started (two
                    # probes at once on a fresh daemon did): that is no missing CRIU
                    if "unable to freeze" in str(err) and attempt < 2:
                        time.sleep(0.5)
                        continue
                    raise DockerCriuError(
                        f"checkpoints fail on the Docker daemon's side ({err}); {CRIU_HINT}"
                    ) from None
        finally:
            self.remove_container(container)
        with contextlib.suppress(OSError):
            fd = os.open(memo, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(stamp + "\n")

    # -- containers -------------------------------------------------------------------

    def create(
        self,
        image: str,
        command: list[str],
        *,
        kind: str,
        labels: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        hostname: str | None = None,
        mounts: tuple[Mount, ...] = (),
        user: str | None = None,
    ) -> str:
        """Create (not start) a container without network; its id. `env` is exactly the
        environment given (no proxy variables added); the daemon adds PATH and HOSTNAME
        when it lacks them."""
        host_config = self.client.create_host_config(
            network_mode="none",
            # The kernel's output goes through tonic's FIFOs: nothing for the daemon to log.
            log_config=docker.types.LogConfig(type="none"),
            binds={
                m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in mounts
            },
        )
        with calling(f"creating a container from {image}"):
            made = self.client.create_container(
                image,
                command=command,
                user=user,
                environment=[f"{k}={v}" for k, v in (env or {}).items()],
                working_dir=cwd,
                hostname=hostname,
                labels=labels_for(kind, labels),
                host_config=host_config,
                network_disabled=True,
                stdin_open=False,
                tty=False,
                use_config_proxy=False,
            )
        return str(made["Id"])

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        """Unpack the tar `data` at `path` in the container (created or running)."""
        with calling("copying files into the container"):
            if not self.client.put_archive(container, path, data):
                raise DockerError(f"docker: copying files into {container[:12]} failed")

    def start(self, container: str, checkpoint: str | None = None) -> None:
        """Start a created container; from checkpoint `name` in its own checkpoint folder
        (`container_checkpoints`) when given."""
        with calling("starting the container" + (f" from {checkpoint}" if checkpoint else "")):
            if checkpoint is None:
                self.client.start(container)
                return
            url = self.client._url("/containers/{0}/start", container)
            res = self.client._post(url, params={"checkpoint": checkpoint})
            self.client._raise_for_status(res)

    def inspect(self, container: str) -> dict[str, Any]:
        with calling("inspecting the container"):
            return dict(self.client.inspect_container(container))

    def state(self, container: str) -> dict[str, Any]:
        return dict(self.inspect(container)["State"])

    def layers(self, container: str) -> tuple[Path, list[Path]] | None:
        """The host folders of the container's filesystem with overlay2: its own changes
        (upper) and the image's layers below (lower, top first); None otherwise."""
        driver = self.inspect(container).get("GraphDriver") or {}
        data = driver.get("Data") or {}
        upper = data.get("UpperDir")
        if driver.get("Name") != "overlay2" or not upper:
            return None
        lower = [Path(p) for p in str(data.get("LowerDir") or "").split(":") if p]
        return Path(upper), lower

    def changes(self, container: str) -> list[str]:
        """Paths the container added, changed or deleted against its image (docker diff)."""
        with calling("listing the container's changes"):
            got = self.client.diff(container)
        return [str(c["Path"]) for c in got or []]

    def wait(self, container: str, timeout: float | None = None) -> int:
        """The container's exit status, once it has stopped."""
        with calling("waiting for the container"):
            got = self.client.wait(container, timeout=timeout)
        return int(got["StatusCode"])

    def pause(self, container: str) -> None:
        """Freeze every process of the container (cgroup freezer)."""
        with calling("pausing the container"):
            self.client.pause(container)

    def unpause(self, container: str) -> None:
        with calling("unpausing the container"):
            self.client.unpause(container)

    def kill(self, container: str) -> None:
        """SIGKILL the container's init (so its whole PID namespace); fine if stopped."""
        try:
            self.client.kill(container, "SIGKILL")
        except docker.errors.APIError as err:
            if err.status_code in (404, 409):  # gone, or not running
                return
            raise DockerError(f"docker: killing the container failed: {explain(err)}") from None

    def remove_container(self, container: str) -> None:
        """Remove a container, running or not, with its checkpoints; fine if gone."""
        try:
            self.client.remove_container(container, force=True, v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as err:
            if err.status_code == 409 and "already in progress" in explain(err):
                return
            raise DockerError(f"docker: removing a container failed: {explain(err)}") from None

    # -- checkpoints ------------------------------------------------------------------

    def checkpoint_create(
        self,
        container: str,
        name: str,
        *,
        leave_running: bool = True,
        directory: Path | None = None,
    ) -> Path:
        """Checkpoint the container as `name`, in `directory` (a folder on this machine)
        or in its own checkpoint folder; the container stops unless `leave_running`.
        Returns the checkpoint's folder (`<directory>/<name>`)."""
        body: dict[str, object] = {"CheckpointID": name, "Exit": not leave_running}
        if directory is not None:
            body["CheckpointDir"] = str(directory)
        url = self.client._url("/containers/{0}/checkpoints", container)
        try:
            res = self.client._post_json(url, data=body)
            self.client._raise_for_status(res)
        except docker.errors.DockerException as err:
            why = explain(err)
            if _criu_problem(why):
                raise DockerCriuError(
                    f"CRIU does not work on the Docker daemon's side ({why}); {CRIU_HINT}"
                ) from None
            raise DockerError(f"docker: checkpoint failed: {why}") from None
        return (directory or self.container_checkpoints(container)) / name

    def checkpoints(self, container: str, directory: Path | None = None) -> list[str]:
        """Names of the container's checkpoints (in `directory` when given)."""
        params = {"dir": str(directory)} if directory is not None else {}
        with calling("listing checkpoints"):
            url = self.client._url("/containers/{0}/checkpoints", container)
            got = self.client._result(self.client._get(url, params=params), json=True)
        return [str(c["Name"]) for c in got or []]

    def checkpoint_delete(self, container: str, name: str, directory: Path | None = None) -> None:
        params = {"dir": str(directory)} if directory is not None else {}
        with calling("deleting a checkpoint"):
            url = self.client._url("/containers/{0}/checkpoints/{1}", container, name)
            self.client._raise_for_status(self.client._delete(url, params=params))

    # -- images -----------------------------------------------------------------------

    def commit(
        self,
        container: str,
        *,
        kind: str = "snapshot",
        labels: dict[str, str] | None = None,
        pause: bool = True,
    ) -> str:
        """The container's filesystem (and config) as a new labeled image; its id."""
        changes = [f'LABEL "{k}"="{v}"' for k, v in labels_for(kind, labels).items()]
        with calling("commit"):
            got = self.client.commit(container, changes="\n".join(changes), pause=pause)
        return str(got["Id"])

    def image_id(self, reference: str) -> str | None:
        """The id of image `reference` (a tag or an id), or None if there is none."""
        try:
            return str(self.client.inspect_image(reference)["Id"])
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.DockerException as err:
            raise DockerError(
                f"docker: inspecting image {reference} failed: {explain(err)}"
            ) from None

    def import_image(
        self,
        tar: Path,
        repository: str,
        tag: str,
        *,
        kind: str = "base",
        labels: dict[str, str] | None = None,
        changes: tuple[str, ...] = (),
    ) -> str:
        """Import a root filesystem tar as `repository:tag`, labeled; the image's id."""
        lines = [*changes, *(f'LABEL "{k}"="{v}"' for k, v in labels_for(kind, labels).items())]
        with calling(f"importing image {repository}:{tag}"):
            self.client.import_image(src=str(tar), repository=repository, tag=tag, changes=lines)
        found = self.image_id(f"{repository}:{tag}")
        if found is None:
            raise DockerError(f"docker: the imported image {repository}:{tag} is missing")
        return found

    def remove_image(self, image: str) -> None:
        """Remove an image (untagging it); fine if gone."""
        try:
            self.client.remove_image(image, force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as err:
            raise DockerError(
                f"docker: removing image {image[:19]} failed: {explain(err)}"
            ) from None

    # -- everything tonic made ----------------------------------------------------------

    def labeled_containers(self, labels: dict[str, str] | None = None) -> list[str]:
        """Ids of the containers (running or not) carrying `tonic=1` and `labels`."""
        with calling("listing containers"):
            got = self.client.containers(all=True, filters={"label": _label_filter(labels)})
        return [str(c["Id"]) for c in got]

    def labeled_images(self, labels: dict[str, str] | None = None) -> list[str]:
        """Ids of the images carrying `tonic=1` and `labels`, newest first."""
        with calling("listing images"):
            got = self.client.images(all=True, filters={"label": _label_filter(labels)})
        return [str(i["Id"]) for i in sorted(got, key=lambda i: -int(i.get("Created", 0)))]

    def image_size(self, image: str) -> tuple[int, str]:
        """An image's size in bytes (its layers and its parents') and its parent's id
        ("" for none, or a parent that is gone)."""
        with calling("inspecting an image"):
            try:
                got = self.client.inspect_image(image)
            except docker.errors.ImageNotFound:
                return 0, ""
        return int(got.get("Size") or 0), str(got.get("Parent") or "")

    def remove_labeled(self, labels: dict[str, str] | None = None) -> tuple[int, int]:
        """Remove every container, then every image, carrying `tonic=1` and `labels`
        (checkpoints in containers' own folders go with them). (containers, images)."""
        containers = self.labeled_containers(labels)
        for container in containers:
            self.remove_container(container)
        pending = self.labeled_images(labels)
        removed = 0
        while pending:  # children before their parents, whatever their creation times
            left: list[str] = []
            failure: DockerError | None = None
            for image in pending:
                try:
                    self.remove_image(image)
                    removed += 1
                except DockerError as err:
                    left.append(image)
                    failure = err
            if failure is not None and len(left) == len(pending):
                raise failure
            pending = left
        return len(containers), removed
