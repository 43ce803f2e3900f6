"""When a pause is worth a snapshot: the cells since the last snapshot took longer than
running them again costs, and longer than restoring the new snapshot would.

A snapshot costs its dump now (about 40-80 ms with CRIU, 250 ms with docker) and, at the
next edit, its restore, which grows with the process tree's resident memory: measured on
these machines (`make bench`), about 1 ms a MiB from the hot cache, for a tree that fits
in $TONIC_HOT_CACHE (with lazy restores, engines/criu/lazy.py, about 0.3: 1 GiB in
0.25-0.29 s, most of it the copy's check), and 2.6 ms a MiB from the store, whose images
are recreated first (1 GiB: 2.2-2.7 s). After cells that ran for less than `min_ms`
($TONIC_SNAPSHOT_MIN_MS), or for less than that restore would take, the pause is not
dumped: resuming from the snapshot before them and running them again costs no more.
`min_ms` 0 dumps at every pause (the tests do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

HOT_MS_PER_MIB = 1.0
LAZY_HOT_MS_PER_MIB = 0.3
STORE_MS_PER_MIB = 2.6


class Cells(Protocol):
    def cell_ms(self, k: int) -> float: ...


def restore_ms(rss: int, hot_bytes: int, lazy: bool = False) -> float:
    """About how long restoring a tree of `rss` resident bytes takes (`lazy`: its
    memory comes in as it is touched)."""
    if rss > hot_bytes:
        per_mib = STORE_MS_PER_MIB
    else:
        per_mib = LAZY_HOT_MS_PER_MIB if lazy else HOT_MS_PER_MIB
    return rss / 2**20 * per_mib


class Policy:
    """Says at each pause whether to take a snapshot there."""

    def __init__(
        self,
        cells: Cells,
        min_ms: float,
        rss: Callable[[], int],
        hot_bytes: int,
        lazy: bool = False,
    ) -> None:
        self.cells = cells
        self.min_ms = min_ms
        self.rss = rss  # the kernel's tree's resident bytes now (0: unknown)
        self.hot_bytes = hot_bytes
        self.lazy = lazy  # restores are lazy (engines/criu/lazy.py)
        self.unsaved_ms = 0.0  # cell time since the last snapshot (or the restored one)

    def due(self, k: int) -> bool:
        self.unsaved_ms += self.cells.cell_ms(k)
        if self.unsaved_ms < self.min_ms:
            return False
        if self.min_ms > 0 and self.unsaved_ms < restore_ms(self.rss(), self.hot_bytes, self.lazy):
            return False
        self.unsaved_ms = 0.0
        return True
