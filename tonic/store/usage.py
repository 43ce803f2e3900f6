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
    seen: set[tuple[int, int]] = set()

    def count(path: str, kind: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            totals[kind] += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError), os.scandir(path) as entries:
                for entry in entries:
                    count(entry.path, kind)

    if not root.is_dir():
        return totals
    count_dir = os.lstat(root)
    seen.add((count_dir.st_dev, count_dir.st_ino))
    totals["other"] += count_dir.st_blocks * 512
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            count(entry.path, KIND_OF.get(entry.name, "other"))
    return totals
