"""Every byte a cache folder holds, by kind, as `du` counts it (allocated blocks, each
file once however many names it has), for `tonic cache ls` and `gc --max-size`."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from tonic.store.layout import FILES, HOT, INDEX, MEMO, OBJECTS, RUNS, SNAPSHOTS, TMP

# What each folder of the cache root holds; anything else is tonic's own (locks, the
# helpers it builds).
KIND_OF = {
    OBJECTS: "stored",
    SNAPSHOTS: "stored",
    INDEX: "stored",
    HOT: "unpacked",
    TMP: "temporary",
    RUNS: "records",
    FILES: "records",
    MEMO: "records",
}
KINDS = {
    "stored": "stored chunks and manifests",
    "unpacked": "unpacked images (for fast restores)",
    "temporary": "temporary work (dumps being stored, restores)",
    "records": "run and file records",
    "other": "locks and tonic's helpers",
}


def usage(root: Path) -> dict[str, int]:
    """Bytes on disk under `root` by kind (the keys of KINDS)."""
    totals = dict.fromkeys(KINDS, 0)
    if not root.is_dir():
        return totals
    seen: set[tuple[int, int]] = set()
    totals["other"] += _count(str(root), seen, descend=False)
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            totals[KIND_OF.get(entry.name, "other")] += _count(entry.path, seen)
    return totals


def du(path: Path) -> int:
    """Bytes on disk of one file or folder, as `du -s` counts them."""
    return _count(str(path), set())


def _count(path: str, seen: set[tuple[int, int]], *, descend: bool = True) -> int:
    """Allocated bytes of `path` and, for a folder (when `descend`), all below it; each
    inode once (`seen`)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    total = 0
    if (st.st_dev, st.st_ino) not in seen:
        seen.add((st.st_dev, st.st_ino))
        total = st.st_blocks * 512
    if descend and stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            for entry in entries:
                total += _count(entry.path, seen)
    return total
