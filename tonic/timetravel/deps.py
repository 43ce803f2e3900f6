"""What each cell used of its surroundings, as observed while it ran, and whether that
still holds: a snapshot after cell k is resumed only if every cell 1..k would see
today what it saw then.

A cell's uses are a table of tokens, each with the value the cell saw:

    env:NAME    the variable's value (None: it was unset); the kernel saw process.env read
    env:*       a digest of the whole environment: it listed process.env, or started a
                child process or a worker, which inherit all of it
    cwd         the working directory: process.cwd(), process.chdir(), a relative path
                given to fs, a child or worker started there
    file:PATH   a digest of the content of a file it opened (None: not a regular file)
    dir:PATH    a digest of the names in a directory it listed
    path:PATH   what is at a path fs looked up (stat, access, existsSync, require's
                lookups, a failed open): "f" file, "d" directory, "o" other, None nothing

Files the notebook itself writes are judged by their starting state (fstravel.py):
what a cell read of them is what it will read again once the files are rolled back.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

Uses = dict[str, str | None]
DIR = "dir"  # a directory's content in file records: it is there (see fstravel.py)
UNKNOWN = "?"  # a starting state tonic did not see (fstravel.py)
# The state after, in the last state a run keeps while it runs: the notebook is writing
# the path, so what is there if the run dies (kill -9) is its own doing: the next run
# rolls the path back to its starting state, as after any run (fstravel.py).
WRITING = "*"


def env_digest(env: Mapping[str, str]) -> str:
    body = json.dumps(sorted(env.items()), separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()


def kind_of(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return "f"
    return "d" if stat.S_ISDIR(mode) else "o"


def listing(path: str, starting: Mapping[str, str | None] | None = None) -> str | None:
    """A digest of the names in a directory; with `starting`, as it will be once the
    notebook's files are in their starting state."""
    try:
        names = set(os.listdir(path))
    except (OSError, ValueError):
        return None
    for written, start in (starting or {}).items():
        folder, name = os.path.split(written)
        if folder == path:
            if start is None:
                names.discard(name)
            else:
                names.add(name)
    return hashlib.sha256("\0".join(sorted(names)).encode()).hexdigest()


@dataclass
class Surroundings:
    """What the cells of this run would see: its environment and working directory, the
    starting state of the files the notebook writes (path -> blob, DIR or None), and a
    way to digest a file's content (None: not a regular file)."""

    env: Mapping[str, str]
    cwd: str
    digest: Digests
    starting: Mapping[str, str | None] = field(default_factory=dict)
    notebook: str | None = None  # the notebook's own file, which a worker or child may run

    def now(self, token: str) -> str | None:
        kind, _, name = token.partition(":")
        if kind == "env":
            return env_digest(self.env) if name == "*" else self.env.get(name)
        if kind == "cwd":
            return self.cwd
        if name in self.starting:
            start = self.starting[name]
            if kind == "path":
                return None if start is None else ("d" if start == DIR else "f")
            if kind == "file":
                return None if start == DIR else start
        if kind == "file":
            return self.digest(name)
        if kind == "dir":
            return listing(name, self.starting)
        return kind_of(name)


def seen_now(tokens: Iterable[str], s: Surroundings) -> Uses:
    """The value of each token today (what a cell sees that uses it)."""
    return {t: s.now(t) for t in tokens}


def stale(cells: Iterable[tuple[int, Mapping[str, str | None]]], s: Surroundings) -> str | None:
    """None when every cell would see what it saw; else why not, for the first that
    would not ("cell 1 read data.json, which changed")."""
    for index, uses in cells:
        for token in sorted(uses):
            now = s.now(token)
            if now != uses[token]:
                return f"cell {index} {_describe(token, uses[token], now, s)}"
    return None


def _shown(path: str, cwd: str) -> str:
    try:
        rel = Path(path).relative_to(cwd)
    except ValueError:
        return path
    return str(rel)


def _describe(token: str, then: str | None, now: str | None, s: Surroundings) -> str:
    kind, _, name = token.partition(":")
    if kind == "env":
        if name == "*":
            return "listed the environment (or started a process that inherits it), which changed"
        if now is None:
            return f"read ${name}, which is now unset"
        return f"read ${name}, which {'is now set' if then is None else 'changed'}"
    if kind == "cwd":
        return f"used the working directory {then}; this run's is {now}"
    shown = _shown(name, s.cwd)
    if kind == "file" and name == s.notebook:
        return "read the notebook's own file (a worker or a child runs it), which changed"
    if kind == "file":
        if now is None:
            return f"read {shown}, which is gone"
        return f"read {shown}, which changed"
    if kind == "dir":
        return f"listed {shown}, which changed"
    if now is None:
        return f"looked for {shown}, which is gone"
    if then is None:
        return f"looked for {shown}, which now exists"
    return f"looked for {shown}, which changed"


class Digests:
    """Content digests of files, remembered by their stat while it stays the same within
    one run (a file read by several cells is hashed once)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[tuple[int, int, int, int], str]] = {}

    def __call__(self, path: str) -> str | None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        sig = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        known = self._known.get(path)
        if known is not None and known[0] == sig:
            return known[1]
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError:
            return None
        digest = h.hexdigest()
        self._known[path] = (sig, digest)
        return digest
