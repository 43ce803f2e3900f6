"""The table of tonic's settings: each TONIC_* variable, the grammar of its values,
its default and one line of help (tonic/settings/__init__.py reads them)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from tonic import launch
from tonic.errors import EngineError, InputError, TonicError

T = TypeVar("T")

SOURCES = ("option", "environment", "package.json", "default")
PROJECT_KEYS = ("engine", "image")  # what package.json's "tonic" object may set

# -- value grammars ---------------------------------------------------------------------

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str, examples: str = "0, 256M, 2G") -> int:
    """Bytes: `0`, `512k`, `500M`, `1.5G`, `256MiB`, `2GB` (units of 1024). ValueError
    (saying what is wrong, with `examples`) for anything else."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ValueError(f"is not a size (examples: {examples})")
    whole, _, fraction = m.group(1).partition(".")
    unit = UNITS[m.group(2).upper()]
    scale: int = 10 ** len(fraction)
    return int(whole) * unit + int(fraction or "0") * unit // scale


def format_size(n: int) -> str:
    """A size as `parse_size` reads it: the largest unit that divides it (512M)."""
    for unit in ("T", "G", "M", "K"):
        if n and n % UNITS[unit] == 0:
            return f"{n // UNITS[unit]}{unit}"
    return str(n)


def given(name: str, text: str) -> str:
    """How an error names a value: `TONIC_HOT_CACHE='v'` (a variable) or `--opt: 'v'`
    (an option)."""
    return f"{name}: {text!r}" if name.startswith("-") else f"{name}={text!r}"


def checked(name: str, text: str, parse: Callable[[str], T], error: type[TonicError]) -> T:
    """`parse(text)`, or `error` with one line naming `name` and the value."""
    try:
        return parse(text)
    except ValueError as err:
        raise error(f"{given(name, text)} {err}") from None


def _text(text: str) -> str:
    return text


def _hot_cache(text: str) -> int:
    return parse_size(text, "0, 256M, 2G")


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("on", "off"):
        raise ValueError("is neither on nor off")
    return value == "on"


def _max_bytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = parse_size(text, "2097152, 4M")
    if value <= 0:
        raise ValueError("must be positive (a size: e.g. 4M)")
    return value


def _milliseconds(text: str) -> float:
    try:
        return max(0.0, float(text))
    except ValueError:
        raise ValueError("is not a number") from None


def _idle_seconds(text: str) -> float:
    """Seconds, positive; anything else is the default (as the server always read it)."""
    try:
        value = float(text)
    except ValueError:
        return launch.IDLE_SECONDS
    return value if value > 0 else launch.IDLE_SECONDS


def _cache(text: str) -> Path:
    # Absolute: the kernel may run in another folder than tonic (the clock shim is there).
    return Path(os.path.abspath(Path(text).expanduser()))


def _default_cache(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "tonic"
    return Path.home() / ".cache" / "tonic"


def _default_criu_home(env: Mapping[str, str]) -> Path:
    data = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "tonic" / "criu"


# -- the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One row of the table."""

    key: str  # the attribute of `Settings`
    variable: str
    kind: str  # what it takes, for people: "name", "size", "milliseconds", ...
    default: str  # the default, for people
    help: str  # one line
    parse: Callable[[str], T]  # a given value; ValueError saying what is wrong
    fallback: Callable[[Mapping[str, str]], T]  # the default (from other variables)
    error: type[TonicError] = TonicError  # what a bad value raises
    option: str | None = None  # the command-line option that wins over the variable
    project: bool = False  # package.json's "tonic" object may set it (same key)
    show: Callable[[T], str] = str  # the value in effect, for `tonic doctor`


def _none(_env: Mapping[str, str]) -> None:
    return None


ENGINE: Setting[str | None] = Setting(
    "engine",
    "TONIC_ENGINE",
    "criu, replay or docker",
    "the first that works here (criu, else replay)",
    "The engine to run notebooks with.",
    _text,
    _none,
    option="--engine",
    project=True,
)
DOCKER_IMAGE: Setting[str | None] = Setting(
    "image",
    "TONIC_DOCKER_IMAGE",
    "a local image",
    "one built from this machine's node",
    "The docker engine's image (any local image with node and /bin/sh).",
    _text,
    _none,
    option="--image",
    project=True,
)
CACHE: Setting[Path] = Setting(
    "cache",
    "TONIC_CACHE",
    "folder",
    "$XDG_CACHE_HOME/tonic, else ~/.cache/tonic",
    "The snapshot cache (private, 0700).",
    _cache,
    _default_cache,
)
HOT_CACHE: Setting[int] = Setting(
    "hot_cache",
    "TONIC_HOT_CACHE",
    "size",
    "4G",
    "How much of the newest snapshots' images to keep unpacked (0 turns it off).",
    _hot_cache,
    lambda _env: 4 << 30,
    show=format_size,
)
SNAPSHOT_MIN_MS: Setting[float] = Setting(
    "snapshot_min_ms",
    "TONIC_SNAPSHOT_MIN_MS",
    "milliseconds",
    "50",
    "No snapshot after cells that together ran for less than this, or than restoring "
    "the snapshot would take (0: one at every pause).",
    _milliseconds,
    lambda _env: 50.0,
    error=EngineError,
    show="{:g}".format,
)
STANDBY: Setting[int] = Setting(
    "standby",
    "TONIC_STANDBY",
    "size",
    "1G",
    "tonic watch and tonic serve keep a kernel restored ahead of the next save from a "
    "snapshot of at most this many bytes of images (0 turns the standby off).",
    _hot_cache,
    lambda _env: 1 << 30,
    show=format_size,
)
LAZY_PAGES: Setting[bool] = Setting(
    "lazy_pages",
    "TONIC_LAZY_PAGES",
    "on or off",
    "on",
    "on: the criu engine's restores copy the memory in as the restored kernel touches it "
    "(CRIU's lazy pages, where the kernel has userfaultfd), the rest in the background; "
    "off: all of it before the kernel goes on.",
    _switch,
    lambda _env: True,
    error=EngineError,
    show=lambda on: "on" if on else "off",
)
MAX_BYTES: Setting[int] = Setting(
    "max_bytes",
    "TONIC_MAX_BYTES",
    "size",
    "2M",
    "The largest notebook file tonic reads.",
    _max_bytes,
    lambda _env: 2 << 20,
    error=InputError,
    show=format_size,
)
NODE: Setting[str | None] = Setting(
    "node",
    "TONIC_NODE",
    "program",
    "node on PATH",
    "The node binary notebooks run with.",
    _text,
    _none,
)
CRIU: Setting[str | None] = Setting(
    "criu",
    "TONIC_CRIU",
    "program",
    "criu on PATH, else the private install",
    "The CRIU binary the criu engine uses.",
    _text,
    _none,
)
CRIU_HOME: Setting[Path] = Setting(
    "criu_home",
    "TONIC_CRIU_HOME",
    "folder",
    "$XDG_DATA_HOME/tonic/criu, else ~/.local/share/tonic/criu",
    "Where scripts/install-criu installs CRIU privately (and tonic looks for it).",
    Path,
    _default_criu_home,
)
SERVER: Setting[str] = Setting(
    "server",
    "TONIC_SERVER",
    "auto, on or off",
    "auto",
    "The warm server: auto uses one and starts one when none runs (not under $CI); on "
    "only uses a running one; off none.",
    launch.server_mode,
    lambda _env: launch.server_mode(None),
)
SERVER_IDLE: Setting[float] = Setting(
    "server_idle",
    "TONIC_SERVER_IDLE",
    "seconds",
    "600",
    "The warm server exits after this long without a command.",
    _idle_seconds,
    lambda _env: launch.IDLE_SECONDS,
    show="{:g}".format,
)
RUNTIME_DIR: Setting[str] = Setting(
    "runtime_dir",
    "TONIC_RUNTIME_DIR",
    "folder",
    "$XDG_RUNTIME_DIR/tonic, else /tmp/tonic-UID",
    "The warm servers' sockets (a folder only you may use).",
    _text,
    lambda env: launch.default_runtime_dir(env.get("XDG_RUNTIME_DIR")),
)

TABLE: tuple[Setting[Any], ...] = (
    ENGINE,
    DOCKER_IMAGE,
    CACHE,
    HOT_CACHE,
    SNAPSHOT_MIN_MS,
    STANDBY,
    LAZY_PAGES,
    MAX_BYTES,
    NODE,
    CRIU,
    CRIU_HOME,
    SERVER,
    SERVER_IDLE,
    RUNTIME_DIR,
)
BY_KEY: dict[str, Setting[Any]] = {s.key: s for s in TABLE}
