"""What a kernel container gets of the host's files, on the host's side: the files node
reads at startup, tars of host paths at their own absolute paths (so stack traces read
as under plain node), and checkpoint folders put where the daemon reads them.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from tonic.engines.docker.image import RootFs

# Variables naming files node itself reads at startup (it warns when one is missing).
STARTUP_FILES = ("NODE_EXTRA_CA_CERTS",)

Placement = Literal["copy", "link", "move"]


def startup_files(env: dict[str, str]) -> list[str]:
    """Host files that node reads at startup because of `env` (copied along)."""
    return [env[k] for k in STARTUP_FILES if env.get(k) and os.path.isfile(env[k])]


def pack(paths: Sequence[Path | str], target: Path, skip: frozenset[str] = frozenset()) -> int:
    """A tar of host `paths` (files or directories) at their absolute paths, without
    the directories in `skip` (real paths); bytes."""
    fs = RootFs()
    for path in paths:
        fs.add_tree(str(path), skip)
    fs.write(target)
    return target.stat().st_size


def place_checkpoint(source: Path, target: Path, how: Placement) -> None:
    """Put checkpoint folder `source` at `target`: copied, hard-linked, or moved (the
    source is gone afterwards). Links and renames fall back to copies across mounts."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if how == "move":
        try:
            os.rename(source, target)
            return
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
        shutil.copytree(source, target)
        shutil.rmtree(source)
        return
    if how == "link":
        try:
            shutil.copytree(source, target, copy_function=os.link)
            return
        except shutil.Error:
            shutil.rmtree(target, ignore_errors=True)
        except OSError as err:
            shutil.rmtree(target, ignore_errors=True)
            if err.errno != errno.EXDEV:
                raise
    shutil.copytree(source, target)
