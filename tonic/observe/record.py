"""One attributed fanotify event -> the Activity's (kind, path) events.

fanotify merges consecutive events on one object by one process into one record (a
created, written and closed file is one record, CREATE|OPEN|MODIFY|CLOSE_WRITE); its
kinds are emitted in the only order they can have happened: create, open, write,
attrib, delete. Dirent records are told apart by their target's handle, so a CREATE|DELETE
record is one object created then deleted, never a delete then a new create.
"""

from __future__ import annotations

from tonic.observe import fanotify as fan
from tonic.observe.activity import Builder
from tonic.observe.paths import Resolver

_WRITE = fan.FAN_MODIFY | fan.FAN_CLOSE_WRITE
_NAMED = (fan.INFO_DFID_NAME, fan.INFO_DFID)
_FLAGS = fan.FAN_ONDIR | fan.FAN_EVENT_ON_CHILD


class Recorder:
    """The Observer's event handling (a mixin: the Observer holds the state)."""

    _buf: bytearray
    _builder: Builder
    _resolver: Resolver
    _ignore: tuple[str, ...]
    _fresh: list[int]

    def _record(self, start: int, end: int, mask: int, verdict: bool | None) -> None:
        """verdict: the event's process was the tree's (True), was not (False: only
        directory renames, which empty the path cache), cannot be known (None)."""
        recs = list(fan.info_records(self._buf, start, end))
        isdir = bool(mask & fan.FAN_ONDIR)
        target = next((r for r in recs if r.kind == fan.INFO_FID), None)
        if mask & fan.FAN_RENAME:
            if verdict is False and not self._fresh:
                self._resolver.forget_all()
                return
            old = next((r for r in recs if r.kind == fan.INFO_OLD_DFID_NAME), None)
            new = next((r for r in recs if r.kind == fan.INFO_NEW_DFID_NAME), None)
            src, src_fresh = self._name(old)
            dst, dst_fresh = self._name(new)
            if isdir:
                self._dir_renamed(src, dst)
                if target is not None and dst is not None:
                    self._resolver.learn(target.fsid, target.handle, dst, dst_fresh)
            if verdict is not False:
                self._emit("move_from", src, verdict, src_fresh)
                self._emit("move_to", dst, verdict, dst_fresh)
            return
        where = next((r for r in recs if r.kind in _NAMED), target)
        path, fresh = self._name(where)
        if path is None and where is target and mask & ~_FLAGS == fan.FAN_ATTRIB:
            return  # the link count of a file unlinked already: its delete is reported
        if mask & fan.FAN_CREATE:
            self._emit("mkdir" if isdir else "create", path, verdict, fresh)
            if isdir and target is not None and path is not None:
                self._resolver.learn(target.fsid, target.handle, path, fresh)
        if mask & fan.FAN_OPEN:
            self._emit("opendir" if isdir else "open", path, verdict, fresh)
        if mask & _WRITE:
            self._emit("write", path, verdict, fresh)
        if mask & fan.FAN_ATTRIB:
            self._emit("attrib", path, verdict, fresh)
        if mask & fan.FAN_DELETE:
            self._emit("rmdir" if isdir else "delete", path, verdict, fresh)

    def _name(self, rec: fan.Fid | None) -> tuple[str | None, bool]:
        if rec is None:
            return None, False
        base, fresh = self._resolver.path(rec.fsid, rec.handle)
        if base is None or rec.name in ("", "."):
            return base, fresh
        return (base.rstrip("/") + "/" + rec.name), fresh

    def _emit(self, kind: str, path: str | None, verdict: bool | None, fresh: bool) -> None:
        if path is None:
            self._builder.lost.append(
                "some events were in a directory that was deleted (or is on a filesystem"
                " reached through no mount) before they were read: their paths are unknown"
            )
            return
        for ignored in self._ignore:
            if path.startswith(ignored) and (
                len(path) == len(ignored) or path[len(ignored)] == "/"
            ):
                return
        if verdict is None:
            self._builder.uncertain.add(path)
            return
        events = self._builder.events
        before = len(events)
        self._builder.add(kind, path)
        if fresh and len(events) > before:
            self._fresh.append(before)

    def _dir_renamed(self, src: str | None, dst: str | None) -> None:
        """A directory src was renamed dst (by any process). Every cached path may be
        stale now: the cache is emptied. Pending events named by a readlink done after
        the rename really happened (its record was still queued) carry dst's new path
        though they came before it: they get src's back."""
        self._resolver.forget_all()
        if src is None or dst is None:
            return
        events, prefix = self._builder.events, dst + "/"
        for i in self._fresh:
            kind, path = events[i]
            if path == dst or path.startswith(prefix):
                events[i] = (kind, src + path[len(dst) :])
