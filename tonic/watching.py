"""Waiting for files to change: the notebook and what its cells read (`tonic watch`,
`tonic serve`).

inotify, through a kept wrapper of its three calls (inotify_simple), watches the folders
of the files, not the files: an editor that saves by writing a new file and renaming it
over the old one replaces the inode a watch on the file would follow. The kernel queues
the events from the moment a folder is watched, so a save made while a run goes on waits
in that queue (no thread, no polling: an idle watch costs nothing).

A save ends with the file closed after writing or renamed into place: that file has
changed at once, as soon as the event is read (a debounce or a polling step would add its
milliseconds to every save's answer). A file created, deleted or written but still open
(a writer that keeps it open, or an editor that deletes before it writes) has changed
once QUIET_MS have passed without a further event for it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable

from inotify_simple import INotify, flags

# A save is over at these; the others wait for quiet.
_AT_ONCE = flags.CLOSE_WRITE | flags.MOVED_TO
_LATER = flags.MODIFY | flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.ATTRIB
# The folder itself went away (its watch ends): every followed file in it changed.
_GONE = flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED
MASK = _AT_ONCE | _LATER | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR
QUIET_MS = 50
WAKE_MS = 200  # the longest wait in one read, so that Ctrl-C is heard


class Watcher:
    """The changes to a set of files, queued by the kernel between calls."""

    def __init__(self) -> None:
        self._inotify = INotify(inheritable=False)
        self._files: frozenset[str] = frozenset()
        self._folders: dict[int, str] = {}  # watch descriptor -> folder
        self._pending: dict[str, float] = {}  # path -> time of its last event, unsettled

    def follow(self, files: Iterable[str]) -> None:
        """Watch these files (absolute paths) from now on, instead of the earlier ones."""
        self._files = frozenset(os.path.abspath(f) for f in files)
        wanted = {os.path.dirname(f) for f in self._files}
        for wd, folder in list(self._folders.items()):
            if folder not in wanted:
                del self._folders[wd]
                with contextlib.suppress(OSError):  # (its folder went away meanwhile)
                    self._inotify.rm_watch(wd)
        for folder in wanted - set(self._folders.values()):
            # (not a folder, or not readable: nothing there can change)
            with contextlib.suppress(OSError):
                self._folders[self._inotify.add_watch(folder, MASK)] = folder
        self._pending = {p: t for p, t in self._pending.items() if p in self._files}

    def changed(self) -> set[str]:
        """The followed files changed since the last call, waiting for one if none has."""
        while True:
            now = time.monotonic()
            wait = WAKE_MS
            if self._pending:
                first = min(self._pending.values()) + QUIET_MS / 1000
                wait = max(0, min(wait, int((first - now) * 1000) + 1))
            got = self._read(self._inotify.read(timeout=wait))
            now = time.monotonic()
            settled = {p for p, t in self._pending.items() if now - t >= QUIET_MS / 1000}
            for path in settled:
                del self._pending[path]
            if got | settled:
                return got | settled

    def _read(self, events: Iterable[tuple[int, int, int, str]]) -> set[str]:
        """The followed files these events finish; the others they touch are pending."""
        now, done = time.monotonic(), set[str]()
        for wd, mask, _cookie, name in events:
            if mask & flags.Q_OVERFLOW:  # events were lost: anything may have changed
                done.update(self._files)
                continue
            folder = self._folders.get(wd)
            if folder is None:
                continue  # a folder no longer followed
            if mask & _GONE:
                if mask & flags.IGNORED:
                    del self._folders[wd]
                done.update(f for f in self._files if os.path.dirname(f) == folder)
                continue
            path = os.path.join(folder, name)
            if path not in self._files:
                continue
            if mask & _AT_ONCE:
                done.add(path)
                self._pending.pop(path, None)
            else:
                self._pending[path] = now
        return done

    def close(self) -> None:
        self._inotify.close()
        self._folders = {}
