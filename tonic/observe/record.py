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
_UNNAMED = (
    "some events were in a directory deleted before they were read, and no record named"
    " it (deleted by a process not observed, or on a filesystem reached through no mount)"
)


class Recorder:
    """The Observer's event handling (a mixin: the Observer holds the state)."""

    _buf: bytearray
    _builder: Builder
    _resolver: Resolver
    _ignore: tuple[str, ...]
    _fresh: list[int]  # indices of pending events named by a readlink
    _renames: list[tuple[int, str, str]]  # pending directory renames: (index, src, dst)
    _unnamed: list[tuple[int, bool | None, fan.Fid]]  # pending events in a gone directory
    _dead: dict[tuple[int, bytes], tuple[str, bool]]  # deleted directories -> their paths

    def _record(self, start: int, end: int, mask: int, verdict: bool | None) -> None:
        """verdict: the event's process was the tree's (True), was not (False: only
        directory renames, which empty the path cache), cannot be known (None)."""
        recs = list(fan.info_records(self._buf, start, end))
        isdir = bool(mask & fan.FAN_ONDIR)
        target = next((r for r in recs if r.kind == fan.INFO_FID), None)
        if mask & fan.FAN_RENAME:
            if verdict is False and not self._fresh and not self._unnamed:
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
        if isdir and mask & fan.FAN_DELETE and target is not None and path is not None:
            self._dead[(target.fsid, target.handle)] = (path, fresh)  # names earlier events
        if verdict is False:
            return  # a foreign rmdir, read for the line above
        named = where if path is None and where is not target else None
        if mask & fan.FAN_CREATE:
            self._emit("mkdir" if isdir else "create", path, verdict, fresh, named)
            if isdir and target is not None and path is not None:
                self._resolver.learn(target.fsid, target.handle, path, fresh)
        if mask & fan.FAN_OPEN:
            self._emit("opendir" if isdir else "open", path, verdict, fresh, named)
        if mask & _WRITE:
            self._emit("write", path, verdict, fresh, named)
        if mask & fan.FAN_ATTRIB:
            self._emit("attrib", path, verdict, fresh, named)
        if mask & fan.FAN_DELETE:
            self._emit("rmdir" if isdir else "delete", path, verdict, fresh, named)

    def _name(self, rec: fan.Fid | None) -> tuple[str | None, bool]:
        if rec is None:
            return None, False
        base, fresh = self._resolver.path(rec.fsid, rec.handle)
        if base is None or rec.name in ("", "."):
            return base, fresh
        return (base.rstrip("/") + "/" + rec.name), fresh

    def _emit(
        self,
        kind: str,
        path: str | None,
        verdict: bool | None,
        fresh: bool,
        named: fan.Fid | None = None,
    ) -> None:
        if path is None:
            if named is None:
                self._builder.lost.append(_UNNAMED)
            else:  # a directory gone already: its rmdir, later in the stream, names it
                self._unnamed.append((len(self._builder.events), verdict, named))
                self._builder.events.append((kind, ""))
            return
        if self._ignored(path):
            return
        if verdict is None:
            self._builder.uncertain.add(path)
            return
        events = self._builder.events
        before = len(events)
        self._builder.add(kind, path)
        if fresh and len(events) > before:
            self._fresh.append(before)

    def _ignored(self, path: str) -> bool:
        for ignored in self._ignore:
            if path.startswith(ignored) and (
                len(path) == len(ignored) or path[len(ignored)] == "/"
            ):
                return True
        return False

    def _name_late(self) -> None:
        """Names the pending events of directories deleted before they were read, from
        the rmdir records (the path is then as of the rmdir: `_undo_renames` maps it back
        through the renames between); the events no rmdir named are dropped, said lost."""
        events = self._builder.events
        for i, verdict, rec in self._unnamed:
            base, _ = self._dead.get((rec.fsid, rec.handle), (None, False))
            if base is None:
                self._builder.lost.append(_UNNAMED)
                continue
            path = base if rec.name in ("", ".") else base.rstrip("/") + "/" + rec.name
            if self._ignored(path):
                continue
            if verdict is None:
                self._builder.uncertain.add(path)
                continue
            events[i] = (events[i][0], path)
            self._fresh.append(i)

    def _settle(self) -> None:
        """Before a take: late names, renames undone, unnamed events dropped."""
        self._name_late()
        self._undo_renames()
        if self._unnamed:
            self._builder.events[:] = [e for e in self._builder.events if e[1]]
            self._unnamed.clear()
        self._dead.clear()

    def _dir_renamed(self, src: str | None, dst: str | None) -> None:
        """A directory src was renamed dst (by any process): every cached path may be
        stale now, the cache is emptied. The rename is kept for `_undo_renames`."""
        self._resolver.forget_all()
        if src is not None and dst is not None and (self._fresh or self._unnamed):
            self._renames.append((len(self._builder.events), src, dst))

    def _undo_renames(self) -> None:
        """Pending events named by a readlink (the path at the time of the readlink) that
        came before directory renames in the stream carry the renames' new paths if the
        readlink was done after them (their records were still queued): each such
        event gets, through the renames after it, latest first, the path it had."""
        events, renames = self._builder.events, self._renames
        if renames:
            for i in self._fresh:
                kind, path = events[i]
                for at, src, dst in reversed(renames):
                    if at <= i:
                        break
                    if path == dst or path.startswith(dst + "/"):
                        path = src + path[len(dst) :]
                events[i] = (kind, path)
        self._fresh.clear()
        renames.clear()
