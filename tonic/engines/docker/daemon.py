"""The connection to the local Docker daemon (through docker-py's low-level `APIClient`):
reaching it, what it is (its info, its root directory) and whether it has checkpoints;
and how docker-py's failures become one-line `DockerError`s (`calling`).

The daemon must run on this machine: checkpoint files are read and written under its
root directory (`root_dir()`). The calls tonic makes on it are api.py's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import docker
import docker.errors
import docker.utils

from tonic.errors import DockerError, DockerNotExperimentalError, DockerUnreachableError

CONNECT_TIMEOUT = 5.0  # seconds to reach the daemon
CALL_TIMEOUT = 600.0  # seconds for one call (checkpoints of big heaps, image imports)
START_HINT = "start one with `make docker` (scripts/start-dockerd)"


def explain(err: Exception) -> str:
    """One line out of a docker-py error."""
    text = str(err)
    if isinstance(err, docker.errors.APIError) and err.explanation:
        text = str(err.explanation)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else type(err).__name__
    # runc's failures come wrapped: "... runc did not terminate successfully: exit status
    # 1: WHY path= /var/run/.../criu-dump.log: unknown"
    marker = "did not terminate successfully: exit status "
    if marker in line:
        line = line.split(marker, 1)[1].partition(": ")[2] or line
        line = line.split(" path= ", 1)[0]
    return line


@contextlib.contextmanager
def calling(what: str) -> Iterator[None]:
    """Turn a docker-py failure of `what` into a one-line DockerError."""
    try:
        yield
    except docker.errors.DockerException as err:
        raise DockerError(f"docker: {what} failed: {explain(err)}") from None
    except OSError as err:  # the socket went away mid-call, a timeout
        raise DockerError(f"docker: {what} failed: {err}") from None


class Daemon:
    """A connection to the local Docker daemon; api.Docker makes the calls on it."""

    def __init__(self, client: Any, base_url: str) -> None:
        self.client = client
        self.base_url = base_url
        self._info: dict[str, Any] | None = None

    @classmethod
    def connect(cls, timeout: float = CONNECT_TIMEOUT) -> Self:
        """Connect to $DOCKER_HOST, else the default socket; the API version is
        negotiated. DockerUnreachableError when nothing answers within `timeout`."""
        kwargs = docker.utils.kwargs_from_env()
        base_url = str(kwargs.get("base_url") or "unix:///var/run/docker.sock")
        try:
            client = docker.APIClient(version="auto", timeout=timeout, **kwargs)
        except docker.errors.DockerException as err:
            why = explain(err)
            # A socket that is missing or refuses says nothing more than "no daemon".
            detail = "" if "Connection" in why or "timed out" in why else f" ({why})"
            raise DockerUnreachableError(
                f"no Docker daemon answers at {base_url}{detail}: {START_HINT}"
            ) from None
        client.timeout = CALL_TIMEOUT
        return cls(client, base_url)

    def close(self) -> None:
        self.client.close()

    def info(self) -> dict[str, Any]:
        if self._info is None:
            with calling("info"):
                self._info = dict(self.client.info())
        return self._info

    def root_dir(self) -> Path:
        """The daemon's root directory (DockerRootDir), where containers keep checkpoints."""
        return Path(str(self.info()["DockerRootDir"]))

    def container_checkpoints(self, container: str) -> Path:
        """The folder `start(..., checkpoint=name)` reads checkpoint `name` from."""
        return self.root_dir() / "containers" / container / "checkpoints"

    def check(self) -> None:
        """The daemon answers and has checkpoints (experimental mode); CRIU on its side
        is checked by `check_criu` (it needs an image)."""
        if not self.info().get("ExperimentalBuild"):
            raise DockerNotExperimentalError(
                f"the Docker daemon at {self.base_url} is not in experimental mode, so it has "
                'no checkpoints: restart it with --experimental (or "experimental": true in '
                f"its config), or stop it and {START_HINT}"
            )
