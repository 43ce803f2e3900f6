"""The one user-facing error base and its named kinds.

Everything a user can cause (a missing file, a binary file, a notebook node cannot
parse, an engine that cannot start) raises a `TonicError`; `error_handler` turns it
into one line on stderr and a non-zero exit code. Anything else is a bug in tonic.
"""

from __future__ import annotations


class TonicError(Exception):
    """An error the user can act on. `str(err)` is the one line shown."""

    exit_code = 2


class InputError(TonicError):
    """The notebook path or its content cannot be used (missing, binary, too large, ...)."""


class NotebookSyntaxError(TonicError):
    """node rejects the notebook's syntax. `detail` holds node's own message."""

    exit_code = 1

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class EngineError(TonicError):
    """An engine is unknown, unavailable, or failed to start its kernel."""


class CellTimeoutError(TonicError):
    """A cell ran longer than --timeout allows."""

    exit_code = 124


class ExportError(TonicError):
    """`tonic export` cannot make a package: a missing dependency, a bad name, an output
    folder in the way, a file that must never be exported."""


class HookError(TonicError):
    """`tonic hook install` cannot write the git hook (no repository, a foreign hook)."""


class DockerError(EngineError):
    """The Docker daemon refused or failed a call tonic's docker engine made."""


class DockerUnreachableError(DockerError):
    """No Docker daemon answers (at $DOCKER_HOST or the default socket)."""


class DockerNotExperimentalError(DockerError):
    """The Docker daemon runs without experimental mode, so it has no checkpoints."""


class DockerCriuError(DockerError):
    """CRIU is missing or does not work on the Docker daemon's side."""
