"""The kernel's four channels and the process at their other end.

fd 3 in the kernel carries commands (tonic -> kernel), fd 4 events (kernel -> tonic);
the notebook's stdout and stderr are what stdio.py makes them (pipes, a terminal, a file).
"""

from __future__ import annotations

import contextlib
import os
import select
from dataclasses import dataclass
from typing import Protocol


class KernelProcess(Protocol):
    """A running kernel (or the process tree around it) that tonic may wait for or end."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...

    def kill(self) -> None: ...


@dataclass(frozen=True)
class Pipes:
    """One side of the kernel's four channels (stdio.open_channels): tonic's ends, or the
    kernel's as they must appear in its process. A stdout or stderr of -1: none (on
    tonic's side: a file node writes itself; the kernel's stderr: its stdout's channel)."""

    cmd: int  # fd 3 in the kernel: tonic -> kernel commands
    events: int  # fd 4 in the kernel: kernel -> tonic events
    stdout: int
    stderr: int


def close_all(pipes: Pipes) -> None:
    for fd in (pipes.cmd, pipes.events, pipes.stdout, pipes.stderr):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def place_channels(pipes: Pipes) -> None:
    """In the child before exec: put the command and event pipes on fds 3 and 4."""
    cmd, events = os.dup(pipes.cmd), os.dup(pipes.events)
    os.dup2(cmd, 3)
    os.dup2(events, 4)
    os.close(cmd)
    os.close(events)


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd`, waiting while a non-blocking pipe is full."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


def end(proc: KernelProcess) -> None:
    """Kill the kernel if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
