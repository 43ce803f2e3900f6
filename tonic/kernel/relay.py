"""Relays a running kernel's output and events to its run's state, from pause to pause.

The notebook's stdout and stderr reach tonic as pipes or a pseudo-terminal's master
(read until every writer closed them), or are a file node writes itself (read back at
each pause and once the kernel has exited). At a pause, everything written before it
belongs to the cells before it: the pipes and the master are drained to the end (a
pty master's read waits for what the slave has queued), the files read to their offset.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import time
from typing import TYPE_CHECKING

from tonic.kernel.pipes import KernelProcess, Pipes, end, write_all
from tonic.kernel.protocol import (
    ABORTS,
    GO,
    SAVED,
    Error,
    Event,
    EventLines,
    Hello,
    Pause,
    Save,
    decode_event,
    encode,
)
from tonic.kernel.stdio import Appended

if TYPE_CHECKING:
    from tonic.kernel.driver import KernelOptions
    from tonic.kernel.state import RunState

READ_SIZE = 1 << 16


class Relay:
    """Relays output and events until the kernel's stdout and stderr close, and the
    kernel has exited when node writes a file itself (or until the edited file of a
    continued run turns out unfit: the run is then marked aborted, before anything of it
    was shown). A timeout counts from the start and again from each pause."""

    def __init__(
        self,
        proc: KernelProcess,
        state: RunState,
        ours: Pipes,
        files: dict[int, Appended],
        timeout: float | None,
        options: KernelOptions,
    ) -> None:
        self.proc = proc
        self.state = state
        self.ours = ours
        self.files = files
        self.timeout = timeout
        self.on_pause = options.on_pause
        self.on_hello = options.on_hello
        self.on_save = options.on_save
        self.snapshots = options.snapshots
        self.streams = {fd: n for fd, n in ((ours.stdout, 1), (ours.stderr, 2)) if fd >= 0}
        self.open_streams = set(self.streams)
        self.exited: int | None = None  # a pidfd, while the kernel runs and files are read
        self.lines = EventLines()
        self.deadline: float | None = None
        self.sel = selectors.DefaultSelector()

    def run(self) -> None:
        ours = self.ours
        for fd in (*self.streams, ours.events, ours.cmd):
            os.set_blocking(fd, False)
        for fd in (*self.streams, ours.events):
            self.sel.register(fd, selectors.EVENT_READ)
        if self.files:
            self.exited = os.pidfd_open(self.proc.pid)
            self.sel.register(self.exited, selectors.EVENT_READ)
        self._rearm()
        try:
            while self.open_streams or self.exited is not None:
                deadline = self.deadline
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready = self.sel.select(wait)
                if not ready and deadline is not None and time.monotonic() >= deadline:
                    self.state.timed_out()
                    end(self.proc)
                    self._drain_all()
                    return
                if not self._ready([int(key.fd) for key, _ in ready]):
                    return
        finally:
            self.sel.close()
            if self.exited is not None:
                os.close(self.exited)
            self._drain_files()

    def _ready(self, fds: list[int]) -> bool:
        """Handle what is ready; False when the run stops here."""
        for fd in fds:
            if fd == self.ours.events:
                if not self._read_events():
                    return False
            elif fd == self.exited:
                # Its last events (how it exited) first, then the files' last bytes.
                while self._read_events(final=True):
                    pass
                if self.state.result.aborted is not None:
                    return False
                self._drain_files()
                self.sel.unregister(fd)
                os.close(fd)
                self.exited = None
            elif fd in self.open_streams:  # it may have closed at a pause
                self._drain(fd)
        return True

    def _rearm(self) -> None:
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout

    def _drain(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as err:  # a pty master once no slave is open
                if err.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                self.sel.unregister(fd)
                self.open_streams.discard(fd)
                return
            self.state.output(self.streams[fd], data)

    def _drain_files(self) -> None:
        for stream, appended in self.files.items():
            data = appended.new()
            if data:
                self.state.output(stream, data, shown=True)

    def _drain_all(self) -> None:
        for fd in list(self.open_streams):
            self._drain(fd)
        self._drain_files()

    def _read_events(self, final: bool = False) -> bool:
        """Handle the complete event lines that arrived; False when the run stops here
        (`final`: when nothing more arrived)."""
        try:
            chunk = os.read(self.ours.events, READ_SIZE)
        except BlockingIOError:
            return not final
        if not chunk:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.ours.events)
            return not final
        return all(self._handle(decode_event(line)) for line in self.lines.feed(chunk))

    def _handle(self, event: Event) -> bool:
        if isinstance(event, Error) and event.origin in ABORTS:
            self.state.result.aborted = ABORTS[event.origin].format(event.error)
            end(self.proc)
            return False
        self.state.going_on()
        if isinstance(event, Pause):
            self._drain_all()
            self.state.paused(event)
            write_all(self.ours.cmd, encode(self.on_pause(event.cell)))
            self._rearm()
        elif isinstance(event, Save):
            self.on_save(event.path)
            write_all(self.ours.cmd, SAVED)
        elif isinstance(event, Hello):
            self.state.hello(event)
            self.on_hello()
            if self.snapshots:  # the kernel waits for it before the first cell
                write_all(self.ours.cmd, encode(GO))
        elif isinstance(event, Error):
            self._drain_all()
            self.state.errored(event)
        return True
