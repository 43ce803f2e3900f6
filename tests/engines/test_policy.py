"""When a pause is worth a snapshot (engines/policy.py), as a table."""

from __future__ import annotations

import pytest

from tonic.engines.policy import Policy, restore_ms

MIB = 2**20
HOT = 512 * MIB


class _Cells:
    def __init__(self, ms: list[float]) -> None:
        self.ms = ms

    def cell_ms(self, k: int) -> float:
        return self.ms[k - 1]


# (cell times in ms, min_ms, resident MiB at each pause, the pauses dumped)
ROWS: list[tuple[list[float], float, int, list[int]]] = [
    ([100, 100, 100], 50, 60, [1, 2, 3]),  # a small tree: every cell is worth it
    ([20, 20, 20], 50, 60, [3]),  # fast cells add up to the minimum
    ([500, 10], 50, 1024, []),  # 1 GiB filled in 0.5 s: restoring costs more than that
    ([5000, 10], 50, 1024, [1]),  # ... in 5 s: worth it
    ([500, 10], 0, 1024, [1, 2]),  # min 0: every pause, whatever it costs
    ([300, 300], 50, 400, [2]),  # 400 MiB fit in the hot cache: about 400 ms, two cells
    ([1000, 1000], 50, 600, [2]),  # 600 MiB do not: about 1.5 s
]


@pytest.mark.parametrize(("ms", "min_ms", "mib", "dumped"), ROWS)
def test_policy(ms: list[float], min_ms: float, mib: int, dumped: list[int]) -> None:
    policy = Policy(_Cells(ms), min_ms, lambda: mib * MIB, HOT)
    assert [k for k in range(1, len(ms) + 1) if policy.due(k)] == dumped


def test_restore_estimate_grows_with_memory() -> None:
    assert restore_ms(0, HOT) == 0
    assert restore_ms(100 * MIB, HOT) < restore_ms(1024 * MIB, HOT) < restore_ms(2048 * MIB, HOT)


def test_lazy_restores_are_cheaper_from_the_hot_copy() -> None:
    assert restore_ms(400 * MIB, HOT, lazy=True) < restore_ms(400 * MIB, HOT)
    assert restore_ms(600 * MIB, HOT, lazy=True) == restore_ms(600 * MIB, HOT)  # the store's
    policy = Policy(_Cells([300, 10]), 50, lambda: 400 * MIB, HOT, lazy=True)
    assert [k for k in (1, 2) if policy.due(k)] == [1]  # 400 MiB lazily: about 120 ms
