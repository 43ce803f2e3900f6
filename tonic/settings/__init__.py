"""tonic's settings: every TONIC_* variable in one table, read in one place.

`TABLE` lists each setting: its variable, what kind of value it takes, its default and
one line of help (README.md's "Settings" section is the same table; a test keeps them
equal). `load()` reads them into a frozen `Settings`: a value comes from a command-line
option (`--engine`, `--image`), else the environment, else the `"tonic"` object of the
package.json that governs the notebook, else the default:

    { "tonic": { "engine": "docker", "image": "my-node:20" } }

An empty variable counts as unset. A value is checked when it is used, so a bad
`TONIC_HOT_CACHE` stops only what needs the hot cache: one line naming the variable
(`TONIC_HOT_CACHE='x' is not a size (examples: 0, 256M, 2G)`), exit code 2.

The one exception: `tonic.launch`, the start-up client, reads TONIC_SERVER and
TONIC_RUNTIME_DIR itself before anything else is imported (it may import only built-in
modules). The grammar is launch's own (`launch.server_mode`, `launch.default_runtime_dir`),
which this table uses too, so the two readings cannot differ.

Not settings: TONIC_KERNEL_PLAN (tonic tells its kernel where its plan is), and the
variables of the test suite and the scripts (README.md, "Settings").

Settings steer tonic itself, never through the environment: the engines get them as
arguments (`engines.engine_for`), and the environment and working directory a notebook
runs with are the `Program`'s (`kernel.program`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonic.errors import EngineError, InputError, TonicError
from tonic.settings.table import (
    BY_KEY,
    CACHE,
    CRIU,
    CRIU_HOME,
    DOCKER_IMAGE,
    ENGINE,
    HOT_CACHE,
    LAZY_PAGES,
    MAX_BYTES,
    NODE,
    PROJECT_KEYS,
    RUNTIME_DIR,
    SERVER,
    SERVER_IDLE,
    SNAPSHOT_MIN_MS,
    SOURCES,
    STANDBY,
    TABLE,
    Setting,
    T,
    checked,
    format_size,
    given,
    parse_size,
)

# -- the settings in effect -------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """Where a setting's value came from: the text given (None: the default), its source
    (one of SOURCES) and the name an error shows (the variable or option; for
    package.json, the file)."""

    text: str | None
    source: str
    name: str


@dataclass(frozen=True)
class Row:
    """A line of `tonic doctor`'s table: a setting, its value, where that came from, and
    the one-line error of a bad value."""

    variable: str
    value: str
    source: str
    error: str | None = None


@dataclass(frozen=True)
class Settings:
    """The settings in effect: one `Value` per row of `TABLE`, typed by the properties."""

    values: Mapping[str, Value]
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def get(self, setting: Setting[T]) -> T:
        value = self.values[setting.key]
        if value.text is None:
            return setting.fallback(self.env)
        return checked(value.name, value.text, setting.parse, setting.error)

    def source(self, setting: Setting[Any]) -> str:
        return self.values[setting.key].source

    def rows(self) -> list[Row]:
        """Each setting's value in effect and where it came from, in the table's order."""
        out = []
        for setting in TABLE:
            value = self.values[setting.key]
            source = value.source
            if source == "package.json":
                source += f" ({value.name})"
            try:
                parsed = self.get(setting)
            except TonicError as err:
                out.append(Row(setting.variable, value.text or "", source, str(err)))
                continue
            shown = setting.default if parsed is None else setting.show(parsed)
            out.append(Row(setting.variable, shown, source))
        return out

    @property
    def engine(self) -> str | None:
        return self.get(ENGINE)

    @property
    def image(self) -> str | None:
        return self.get(DOCKER_IMAGE)

    @property
    def cache(self) -> Path:
        return self.get(CACHE)

    @property
    def hot_cache(self) -> int:
        return self.get(HOT_CACHE)

    @property
    def snapshot_min_ms(self) -> float:
        return self.get(SNAPSHOT_MIN_MS)

    @property
    def standby(self) -> int:
        return self.get(STANDBY)

    @property
    def lazy_pages(self) -> bool:
        return self.get(LAZY_PAGES)

    @property
    def max_bytes(self) -> int:
        return self.get(MAX_BYTES)

    @property
    def node(self) -> str | None:
        return self.get(NODE)

    @property
    def criu(self) -> str | None:
        return self.get(CRIU)

    @property
    def criu_home(self) -> Path:
        return self.get(CRIU_HOME)

    @property
    def server(self) -> str:
        return self.get(SERVER)

    @property
    def server_idle(self) -> float:
        return self.get(SERVER_IDLE)

    @property
    def runtime_dir(self) -> str:
        return self.get(RUNTIME_DIR)


def load(
    notebook: Path | None = None,
    *,
    options: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The settings in effect: `options` (by key: {"engine": "replay"}; None: not given)
    over `env` (default: os.environ) over the package.json that governs `notebook` (a
    file, or a folder: its nearest package.json) over the defaults. A bad "tonic" object
    in package.json is an InputError; bad values are errors when they are used."""
    env = dict(os.environ if env is None else env)
    given_options = {k: v for k, v in (options or {}).items() if v}
    for key in given_options:
        if key not in BY_KEY or BY_KEY[key].option is None:
            raise ValueError(f"no command-line option sets {key!r}")  # a bug in tonic
    project, package = project_defaults(notebook) if notebook is not None else ({}, None)
    values = {}
    for setting in TABLE:
        value = Value(None, "default", setting.variable)
        if setting.key in given_options:
            assert setting.option is not None
            value = Value(given_options[setting.key], "option", setting.option)
        elif env.get(setting.variable):
            value = Value(env[setting.variable], "environment", setting.variable)
        elif setting.project and setting.key in project:
            value = Value(project[setting.key], "package.json", str(package))
        values[setting.key] = value
    return Settings(values, env)


def current() -> Settings:
    """The settings of this process's environment (no options, no project): what the
    parts of tonic that serve every notebook alike read (the cache, the hot cache's size,
    node, CRIU). Read anew each time: a warm server's worker takes on its client's
    environment."""
    return load()


def node_binary() -> str:
    """The node notebooks run with: $TONIC_NODE, else node on PATH."""
    node = current().node or shutil.which("node")
    if node is None:
        raise EngineError("node was not found on PATH (or set TONIC_NODE to its path)")
    return node


def node_argv0() -> str:
    """node's argv[0] as a user would type it: `node` (found on PATH), else $TONIC_NODE
    as given. node shows it (`process.argv0`, the native stack of an abort)."""
    return current().node or "node"


def nearest_package(path: Path) -> Path | None:
    """The package.json that governs `path`, as node finds it: the nearest one in the
    folders above it."""
    for directory in path.resolve().parents:
        candidate = directory / "package.json"
        if candidate.is_file():
            return candidate
    return None


def project_defaults(notebook: Path) -> tuple[dict[str, str], Path | None]:
    """The `"tonic"` object of the package.json that governs `notebook` (a file, or a
    folder), and that file."""
    package = nearest_package(notebook / "package.json" if notebook.is_dir() else notebook)
    if package is None:
        return {}, None
    try:
        data = json.loads(package.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, package  # node reports a broken package.json itself
    section = data.get("tonic") if isinstance(data, dict) else None
    if section is None:
        return {}, package
    if not isinstance(section, dict):
        raise InputError(f'{package}: "tonic" must be an object like {{"engine": "docker"}}')
    for key, value in section.items():
        if key not in PROJECT_KEYS:
            known = ", ".join(PROJECT_KEYS)
            raise InputError(f'{package}: unknown "tonic" setting {key!r} (known: {known})')
        if not isinstance(value, str) or not value:
            raise InputError(f'{package}: "tonic"."{key}" must be a non-empty string')
    return dict(section), package


def markdown_table() -> str:
    """`TABLE` as README.md's "Settings" section shows it (a test keeps them equal)."""
    lines = [
        "| variable | takes | default | also set by | what it sets |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in TABLE:
        also = [f"`{s.option}`"] if s.option else []
        if s.project:
            also.append(f'package.json `"{s.key}"`')
        cells = [f"`{s.variable}`", s.kind, s.default, ", ".join(also) or "-", s.help]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "BY_KEY",
    "MAX_BYTES",
    "SOURCES",
    "TABLE",
    "Row",
    "Setting",
    "Settings",
    "Value",
    "checked",
    "current",
    "format_size",
    "given",
    "load",
    "markdown_table",
    "nearest_package",
    "node_binary",
    "parse_size",
    "project_defaults",
]
