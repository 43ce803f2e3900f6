"""tonic.observe.tree's attribution rule on made-up fork/exit histories: an event's tgid
is decided when its candidate lives (alive after the window) agree, uncertain when not."""

from __future__ import annotations

from typing import Any

import pytest

from tonic.observe.connector import PROC_EVENT_EXIT, PROC_EVENT_FORK, ProcEvent
from tonic.observe.tree import Tree

# Numbers above any pid_max: no /proc entry can ever answer for them.
ROOT, CHILD, FOREIGN = 90_000_001, 90_000_002, 90_000_003


class FakeConnector:
    def __init__(self, events: list[ProcEvent]) -> None:
        self.events = events
        self.overflowed = False

    def read(self) -> Any:
        events, self.events = self.events, []
        return iter(events)


def fork(ns: int, parent: int, child: int) -> ProcEvent:
    return ProcEvent(PROC_EVENT_FORK, ns, child, child, parent)


def exit_(ns: int, tgid: int) -> ProcEvent:
    return ProcEvent(PROC_EVENT_EXIT, ns, tgid, tgid, 0)


def tree_of(events: list[ProcEvent]) -> Tree:
    tree = Tree(FakeConnector(events))  # type: ignore[arg-type]
    tree.gen, tree.ns = 1, 12345
    tree._root(ROOT)
    tree.drain()
    return tree


# (history, window, tgid asked about, verdict)
CASES = [
    ("a live child of the tree", [fork(1, ROOT, CHILD)], 0, CHILD, True),
    ("a child that exited in the window", [fork(1, ROOT, CHILD), exit_(9, CHILD)], 5, CHILD, True),
    ("a foreign process", [fork(1, FOREIGN, CHILD)], 0, CHILD, False),
    (
        "a number reused by a foreign process within the window",
        [fork(1, ROOT, CHILD), exit_(9, CHILD), fork(10, FOREIGN, CHILD)],
        5,
        CHILD,
        None,
    ),
    (
        "a number reused, the tree's life ended before the window",
        [fork(1, ROOT, CHILD), exit_(3, CHILD), fork(10, FOREIGN, CHILD)],
        5,
        CHILD,
        False,
    ),
    (
        "a grandchild, exited",
        [fork(1, ROOT, CHILD), fork(2, CHILD, FOREIGN), exit_(8, FOREIGN)],
        5,
        FOREIGN,
        True,
    ),
    (
        "exited before the window, no /proc entry: unknown",
        [fork(1, ROOT, CHILD), exit_(3, CHILD)],
        5,
        CHILD,
        None,
    ),
]


@pytest.mark.parametrize(
    ("events", "window", "tgid", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_member(events: list[ProcEvent], window: int, tgid: int, verdict: bool | None) -> None:
    tree = tree_of(events)
    tree.window = window
    assert tree.member(tgid) is verdict
