"""A terminal resize during a run reaches the kernel, as it reaches node on a terminal.

On a terminal the kernel writes to a pseudo-terminal of tonic's (stdio.py), made with the
terminal's size. When the user resizes the terminal, tonic gets SIGWINCH: it gives each
pseudo-terminal the terminal's new size, then sends SIGWINCH to what the terminal's
foreground job would be under node: node (and the children it started in its own
process group), never a child that left for a session of its own (`detached: true`).
node's `process.stdout` then reads the new size and emits `'resize'`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import termios
import threading
from collections.abc import Iterator

from tonic.procs import descendants, ids


def targets(root: int) -> list[int]:
    """Whom a resize signals (`os.kill` arguments): node itself when the kernel is node
    (it leads no session), else the process groups of the kernel's tree (rooted at its
    init, a session leader) that are led by a process of the init's session."""
    own = ids(root)
    if own is None:
        return []
    if own[2] != root:
        return [root]
    return [
        -pid for pid in descendants(root) if (got := ids(pid)) and got[1] == pid and got[2] == root
    ]


def resized(ptys: dict[int, int], root: int) -> None:
    """The terminals' sizes onto their pseudo-terminals (master: terminal), then SIGWINCH
    to the kernel's foreground job."""
    for master, terminal in ptys.items():
        with contextlib.suppress(OSError):
            size = fcntl.ioctl(terminal, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    for target in targets(root):
        with contextlib.suppress(OSError):
            os.kill(target, signal.SIGWINCH)


@contextlib.contextmanager
def following(ptys: dict[int, int], root: int) -> Iterator[None]:
    """While the kernel runs: pass every resize of the terminals on (main thread only,
    where Python can take signals; nothing to do without pseudo-terminals)."""
    if not ptys or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGWINCH, lambda *_: resized(ptys, root))
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, before)
