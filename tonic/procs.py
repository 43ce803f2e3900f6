"""Process helpers: a child that dies with its parent, a subreaper (prctl); a process's
ids, descendants, a tree's resident memory and the processes holding files of a folder
(/proc)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def parent_death_signal(signum: int) -> Callable[[], None]:
    """A step that makes the calling process get `signum` when its parent dies: for a
    child between fork and exec (preexec_fn; only the call happens there, libc is
    looked up here), or for a forked worker. A parent already gone: exit at once."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        let_signals_through()
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm


# Held while tonic forks a child that runs Python before its exec (a preexec_fn).
HELD = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Around a fork with a preexec_fn: SIGINT and SIGTERM wait until it is done. Python
    would run their handlers in the fork's at-fork hooks (logging's lock release), which
    ignore what a handler raises: a Ctrl-C, or the SIGTERM that ends tonic (a warm
    server's worker when its server dies), would be lost, the run going on. The child
    lets them through again before its exec (`let_signals_through`)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a held one is handled here


def let_signals_through() -> None:
    """In a child forked within `forking()`: SIGINT and SIGTERM as before."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)


def become_subreaper() -> None:
    """Orphaned descendants (trees CRIU restored, detached) are reparented to us, so
    that we can still wait for them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def ids(pid: int) -> tuple[int, int, int] | None:
    """(parent, process group, session) of `pid`, from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[2]), int(fields[3])


def descendants(root: int) -> list[int]:
    """`root`'s descendants now, parents before their children."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (got := ids(int(name))) is not None:
            children.setdefault(got[0], []).append(int(name))
    found, todo = [], [root]
    while todo:
        more = children.get(todo.pop(0), [])
        found += more
        todo += more
    return found


def holders(folders: Collection[str]) -> set[int]:
    """The processes (but this one) whose working folder or an open file is in one of
    `folders` (real paths): what a killed CRIU left of what it forked."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            links = [f"/proc/{name}/cwd"]
            links += [f"/proc/{name}/fd/{fd}" for fd in os.listdir(f"/proc/{name}/fd")]
        except OSError:
            continue
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if any(target == f or target.startswith(f + "/") for f in folders):
                found.add(int(name))
                break
    return found


def tree_rss(pid: int) -> int:
    """Resident bytes of the process tree rooted at `pid`."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return total
