"""Process lifetime helpers (prctl): a child that dies with its parent, a subreaper."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def parent_death_signal(signum: int) -> Callable[[], None]:
    """A step that makes the calling process get `signum` when its parent dies: for a
    child between fork and exec (preexec_fn; only the call happens there, libc is
    looked up here), or for a forked worker. A parent already gone: exit at once."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm


def become_subreaper() -> None:
    """Orphaned descendants (trees CRIU restored, detached) are reparented to us, so
    that we can still wait for them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
