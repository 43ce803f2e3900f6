"""What the tree did between two takes: its events in order, deduplicated, and the net
effects tonic asks about (opened, changed, created, deleted)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Kinds that change what exists at a path: never deduplicated, they order the others.
STRUCTURAL = frozenset({"create", "mkdir", "delete", "rmdir", "move_from", "move_to"})
CHANGES = frozenset({"create", "mkdir", "write", "delete", "rmdir", "move_from", "move_to"})
_APPEAR = frozenset({"create", "mkdir", "move_to"})
_VANISH = frozenset({"delete", "rmdir", "move_from"})


@dataclass
class Activity:
    """events: (kind, absolute path) in the order they happened, a kind repeated at a path
    only when a structural event (create, delete, move) came between; kinds: "open",
    "opendir", "create", "mkdir", "write" (modify, close of a file opened for writing,
    truncate), "attrib", "delete", "rmdir", "move_from", "move_to".
    lost: None when nothing may be missing, else why events may be (queue overflow, ...).
    uncertain: paths touched by processes that could not be told the tree's or not."""

    events: list[tuple[str, str]] = field(default_factory=list)
    lost: str | None = None
    uncertain: set[str] = field(default_factory=set)

    @property
    def opened(self) -> set[str]:
        """Paths opened (to read, write or list), files and directories."""
        return {p for k, p in self.events if k in ("open", "opendir")}

    @property
    def changed(self) -> set[str]:
        """Paths created, written, truncated, deleted or moved (from or to), even when the
        net effect is nothing (a temporary file)."""
        return {p for k, p in self.events if k in CHANGES}

    @property
    def created(self) -> set[str]:
        """Paths that exist now and did not before (first seen created, last not gone)."""
        return {
            p
            for p, (first, last) in self._ends().items()
            if first in ("create", "mkdir") and last in _APPEAR
        }

    @property
    def deleted(self) -> set[str]:
        """Paths that existed before and do not now (a temporary file is in neither)."""
        return {
            p
            for p, (first, last) in self._ends().items()
            if last in _VANISH and first not in ("create", "mkdir")
        }

    def _ends(self) -> dict[str, tuple[str, str]]:
        """Path -> its first and last structural kinds."""
        ends: dict[str, tuple[str, str]] = {}
        for kind, path in self.events:
            if kind in STRUCTURAL:
                ends[path] = (ends[path][0] if path in ends else kind, kind)
        return ends

    def __bool__(self) -> bool:
        return bool(self.events or self.uncertain or self.lost)


class Builder:
    """Collects events cheaply: a (kind, path) already seen since the path's last
    structural event is dropped."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.seen: dict[str, set[str]] = {}
        self.uncertain: set[str] = set()
        self.lost: list[str] = []

    def add(self, kind: str, path: str) -> None:
        if kind in STRUCTURAL:
            self.seen[path] = {kind}
            self.events.append((kind, path))
            return
        kinds = self.seen.get(path)
        if kinds is None:
            self.seen[path] = {kind}
        elif kind in kinds:
            return
        else:
            kinds.add(kind)
        self.events.append((kind, path))

    def take(self) -> Activity:
        lost = "; ".join(dict.fromkeys(self.lost)) or None
        activity = Activity(self.events, lost, self.uncertain)
        self.events, self.seen, self.uncertain, self.lost = [], {}, set(), []
        return activity
