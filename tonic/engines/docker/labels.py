"""The labels of what the docker engine makes: every container and image carries
tonic=1 and its kind (api.py), and these: the cache it belongs to, the notebook, and
for a kernel container the tonic process running it (gc removes one whose tonic died)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

NOTEBOOK_LABEL = "tonic.notebook"
CACHE_LABEL = "tonic.cache"  # which snapshot cache the container or image belongs to
OWNER_LABEL = "tonic.owner"  # the tonic process running a kernel container: "pid boot-id"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "?"


def owner() -> str:
    return f"{os.getpid()} {_boot_id()}"


def owner_alive(owner: str | None) -> bool:
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
