"""Waiting for files to change: the notebook and what its cells read (`tonic watch`).

A kept library, watchfiles (inotify through Rust's notify), watches the folders of the
files, not the files: an editor that saves by writing a new file and renaming it over
the old one replaces the inode a watch on the file would follow. A thread collects the
changes from before a run starts to after it ends, so a save made while a run goes on
is not lost; changes arriving within a few milliseconds of each other (an editor's
truncate and write) come as one.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable

import watchfiles

# Milliseconds without a further change before the changes are handed on (watchfiles
# polls its queue at this step: a save is seen ~1.5 steps later; measured idle, a step
# of 3 ms costs 2% of a core, 5 ms 0.9%, 10 ms 0.6%), and the longest a stream of
# changes is held back.
STEP_MS = 5
DEBOUNCE_MS = 400


class Watcher:
    """The changes to a set of files, gathered in the background."""

    def __init__(self) -> None:
        self._files: frozenset[str] = frozenset()
        self._folders: frozenset[str] = frozenset()
        self._stop: threading.Event | None = None
        self._changes: queue.SimpleQueue[str] = queue.SimpleQueue()

    def follow(self, files: Iterable[str]) -> None:
        """Watch these files (absolute paths) from now on, instead of the earlier ones."""
        wanted = frozenset(os.path.abspath(f) for f in files)
        folders = frozenset(d for d in map(os.path.dirname, wanted) if os.path.isdir(d))
        self._files = wanted
        if folders == self._folders:
            return
        stop, before = threading.Event(), self._stop
        thread = threading.Thread(
            target=self._watch, args=(folders, stop), name="tonic-watch", daemon=True
        )
        thread.start()  # before the old one stops: no change falls between the two
        self._folders, self._stop = folders, stop
        if before is not None:
            before.set()

    def _watch(self, folders: frozenset[str], stop: threading.Event) -> None:
        if not folders:
            return
        for changes in watchfiles.watch(
            *folders,
            watch_filter=lambda _change, path: os.path.abspath(path) in self._files,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=stop,
            recursive=False,
            ignore_permission_denied=True,
            raise_interrupt=False,
        ):
            for _change, path in changes:
                self._changes.put(os.path.abspath(path))

    def changed(self) -> set[str]:
        """The followed files changed since the last call, waiting for one if none has
        (in short waits, so that Ctrl-C is heard)."""
        while True:
            got: set[str] = set()
            try:
                got.add(self._changes.get(timeout=0.2))
                while True:
                    got.add(self._changes.get_nowait())
            except queue.Empty:
                pass
            if got & self._files:
                return got & self._files

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        self._folders = frozenset()
