"""Memos: small answers of slow probes (a tool's version, a daemon's features), kept in
the private cache root's memo/ folder, keyed by what they depend on."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from tonic.store.layout import MEMO, default_root, staging_name


def private_file(name: str) -> Path:
    """A small file of tonic's own memos in the private cache root (created 0700)."""
    root = default_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = root / MEMO
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory / name


def recall(name: str, stamp: str, max_age: float | None = None) -> str | None:
    """What `remember(name, stamp, ...)` kept, if the stamp is the same (and the memo is
    younger than `max_age` seconds); None otherwise."""
    path = private_file(name)
    try:
        memo = json.loads(path.read_text())
        if max_age is not None and time.time() - path.stat().st_mtime > max_age:
            return None
    except (OSError, ValueError):
        return None
    value = memo.get(stamp) if isinstance(memo, dict) else None
    return value if isinstance(value, str) else None


def remember(name: str, stamp: str, value: str) -> None:
    """Keep one memo under `name` (the answer of a slow probe, keyed by what it depends
    on). Best effort: a memo that cannot be written is asked for again next time."""
    with contextlib.suppress(OSError):
        path = private_file(name)
        tmp = staging_name(default_root(), "memo")  # whole or not at all (a full disk)
        tmp.parent.mkdir(mode=0o700, exist_ok=True)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({stamp: value}, f)
            os.rename(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
