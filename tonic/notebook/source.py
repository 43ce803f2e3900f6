"""Reads a notebook file and refuses what cannot be one, with one clear line each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tonic import settings
from tonic.errors import InputError

MAX_BYTES_ENV = settings.MAX_BYTES.variable
# What `tonic check`, the hook and `tonic export` take for notebooks (`tonic run` runs any
# file, as node does); TypeScript's where node strips types (syntax.py).
NOTEBOOK_SUFFIXES = (".js", ".cjs", ".mjs", ".ts", ".cts", ".mts")
NOTEBOOK_KINDS = "a .js, .cjs, .mjs, .ts, .cts or .mts"


@dataclass(frozen=True)
class Source:
    """A notebook's path and exact bytes, known to be UTF-8 text."""

    path: Path
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def max_bytes() -> int:
    """$TONIC_MAX_BYTES (tonic.settings)."""
    return settings.current().max_bytes


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def read_source(path: str | Path, *, allow_empty: bool = False) -> Source:
    """Load `path` as a notebook, or raise InputError saying why it cannot be one."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a notebook file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    limit = max_bytes()
    size = p.stat().st_size
    if size > limit:
        raise InputError(
            f"{p}: file is {_size(size)}, larger than the {_size(limit)} limit for notebooks "
            f"(raise it with {MAX_BYTES_ENV}=BYTES)"
        )
    try:
        data = p.read_bytes()
    except PermissionError:
        raise InputError(f"{p}: permission denied") from None
    except OSError as err:
        raise InputError(f"{p}: cannot read: {err.strerror}") from None
    if b"\0" in data:
        raise InputError(f"{p}: binary file (contains NUL bytes), not a JavaScript notebook")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{p}: not UTF-8 text (invalid byte at offset {err.start}); "
            "notebooks must be UTF-8 encoded"
        ) from None
    if not allow_empty and not data.strip():
        raise InputError(f"{p}: empty file, nothing to run")
    return Source(path=p.resolve(), data=data)
