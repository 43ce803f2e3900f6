"""The lifecycle's view of the notebook's processes (tonic/observe/): what they did to
files between two pauses, as the recorder's `Observed` steps."""

from __future__ import annotations

from pathlib import Path

from tonic.errors import TonicError
from tonic.observe import Activity, Observer, unavailable
from tonic.timetravel.recorder import Observed

_CHANGES = {"create": True, "mkdir": True, "write": False, "delete": False, "rmdir": False}
_CHANGES |= {"move_from": False, "move_to": False}


def as_observed(activity: Activity) -> Observed:
    """The files opened, directories listed and paths changed (created or not), in order."""
    opened: dict[str, None] = {}
    listed: dict[str, None] = {}
    changed: dict[str, bool] = {}
    for kind, path in activity.events:
        if kind == "open":
            opened.setdefault(path)
        elif kind == "opendir":
            listed.setdefault(path)
        elif kind in _CHANGES:
            changed.setdefault(path, _CHANGES[kind])
    lost = activity.lost
    if lost is None and activity.uncertain:
        lost = f"tonic could not tell which process changed {sorted(activity.uncertain)[0]}"
    return Observed(tuple(opened), tuple(listed), tuple(changed.items()), lost)


def _joined(first: Activity | None, then: Activity) -> Activity:
    if first is None:
        return then
    return Activity(
        first.events + then.events, first.lost or then.lost, first.uncertain | then.uncertain
    )


class Watcher:
    """One kernel run's observer, when the engine's session observes (else nothing)."""

    def __init__(self, ignore: Path, *, enabled: bool) -> None:
        self.observer: Observer | None = None
        self.why: str | None = None
        self.attached = False
        self.early: Activity | None = None  # taken in ahead (`read_now`), not yet handed on
        if not enabled:
            return
        self.why = unavailable()
        if self.why is None:
            try:
                self.observer = Observer(ignore=[ignore])
            except (TonicError, OSError) as err:
                self.why = str(err)

    def attach(self, pid: int | None) -> None:
        if self.observer is not None and pid is not None:
            self.observer.attach(pid)
            self.attached = True

    def observed(self) -> Observed | None:
        """What the processes did since the last call (None: this engine does not
        observe them)."""
        if self.observer is None:
            if self.why is None:
                return None
            return Observed(lost=f"the notebook's processes cannot be observed: {self.why}")
        if not self.attached:
            return Observed(lost="the notebook's processes cannot be observed")
        activity = _joined(self.early, self.observer.take())
        self.early = None
        return as_observed(activity)

    def read_now(self) -> None:
        """Take in what the processes did so far, named while the paths are there (the
        next `observed` hands it on): a restore's reads of image files that are removed
        right after, and what the restored workers and children did meanwhile."""
        if self.observer is not None and self.attached:
            self.early = _joined(self.early, self.observer.take())

    def close(self) -> None:
        if self.observer is not None:
            self.observer.close()
            self.observer = None
