"""Snapshot keys: a chained SHA-256 over everything a prefix of cells depends on.

`base` covers what every cell sees: tonic's kernel, node's binary, version and options,
the engine, the module kind, the file's path and arguments, what its stdout and stderr
are (a terminal of a size, a file, one channel for both), the environment variables
node and its libraries read natively (NODE_OPTIONS, TZ, LANG...: no process.env read shows
them) and a fingerprint of the installed packages. Then prefix k chains in the bytes of
the file up to the end of cell k, so prefix k is equal between two versions of the file
exactly when node compiled the same text for cells 1..k at the same positions.

What the cells used besides (files, the other environment variables, the working
directory) is observed at run time and checked on reuse (deps.py), as are the local
modules they loaded (`modules_still_valid`). What a prefix sees of later cells (hoisted
functions and vars) is judged when a snapshot is reused, against the version that made
it (continuation/).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tonic.notebook.cells import Notebook
from tonic.store import recall, remember

KEY_VERSION = "tonic-key-3"  # 3: the kernel runs under tonic's init (kernel/init.c)
# Variables node, libuv, V8, ICU, OpenSSL and the C library read themselves: in the key.
# Every other one counts only where a cell read it (deps.py).
NATIVE_ENV = frozenset({"TZ", "LANG", "LANGUAGE", "HOME"})
NATIVE_PREFIXES = ("NODE_", "UV_", "LD_", "LC_", "OPENSSL_", "SSL_", "MALLOC_", "GLIBC_")


def native_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The variables of `env` that node and the libraries under it read natively."""
    return tuple(
        sorted((k, v) for k, v in env.items() if k in NATIVE_ENV or k.startswith(NATIVE_PREFIXES))
    )


# The modules of continuation/, which judges and builds the suffix a continued process
# evals: with the kernel and the pause sites, their text is in every key.
CONTINUATION = tuple(
    f"timetravel/continuation/{name}.py"
    for name in ("__init__", "analysis", "free", "rules", "suffix", "versions")
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_hash(value: object) -> str:
    return sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


@functools.cache
def kernel_fingerprint() -> str:
    here = resources.files("tonic")
    # init.c: the init is in every snapshot, and restored with its pipes and status.
    parts = [
        (here / "kernel" / name).read_bytes() for name in ("kernel.js", "clockshim.c", "init.c")
    ]
    parts += [
        (here / name).read_bytes()
        for name in (
            "notebook/instrument.py",
            "notebook/uncapture.py",  # the texts of a run's record are as it makes them
            "notebook/declarations.py",
            *CONTINUATION,
        )
    ]
    return sha256(b"\0".join(parts))


@functools.cache
def node_fingerprint(node: str) -> str:
    """node's binary and version (asking node costs ~60 ms: remembered per binary)."""
    real = os.path.realpath(node)
    st = os.stat(real)
    stamp = f"{real} {st.st_size} {st.st_mtime_ns}"
    remembered = recall("node.txt", stamp)
    if remembered is not None:
        return remembered
    version = subprocess.run(
        [node, "-p", "process.version + ' ' + process.arch + ' ' + process.versions.v8"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    found = f"{stamp} {version}"
    remember("node.txt", stamp, found)
    return found


def packages_fingerprint(start: Path) -> str:
    """What `require('pkg')` could find: each node_modules up the tree, by its lock file
    (npm's `.package-lock.json`) or else its top-level entries' modification times."""
    parts: list[object] = []
    for directory in [start, *start.parents]:
        modules = directory / "node_modules"
        if not modules.is_dir():
            continue
        lock = modules / ".package-lock.json"
        if lock.is_file():
            parts.append([str(modules), sha256(lock.read_bytes())])
            continue
        entries = []
        for entry in sorted(os.scandir(modules), key=lambda e: e.name):
            try:
                entries.append([entry.name, entry.stat().st_mtime_ns])
            except OSError:
                continue
        parts.append([str(modules), entries])
    return _json_hash(parts)


@dataclass(frozen=True)
class Environment:
    """The parts of the key that do not come from the notebook's text."""

    node: str
    engine: str
    path: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # the natively read variables
    packages: str
    inspect: bool  # only in the key of a whole stored run (it shows the values or not)
    stdin: str = ""  # the file on stdin and a digest of its content ("": none)
    stdio: str = ""  # what node's stdout and stderr are (kernel/stdio.py; "": two pipes)

    @classmethod
    def current(
        cls,
        *,
        node: str,
        engine: str,
        path: Path,
        args: tuple[str, ...],
        inspect: bool,
        env: Mapping[str, str],
        stdin: str | None = None,
        stdio: str = "",
    ) -> Environment:
        """The key's parts for a program run with `env` (the Program's), `stdin` when
        it is a regular file, and `stdio` (Stdio.key)."""
        return cls(
            node=node_fingerprint(node),
            engine=engine,
            path=str(path),
            args=args,
            env=native_env(env),
            packages=packages_fingerprint(path.parent),
            inspect=inspect,
            stdin=f"{stdin} {file_hash(stdin)}" if stdin else "",
            stdio=stdio,
        )

    def parts(self) -> dict[str, object]:
        return {
            "tonic": [KEY_VERSION, kernel_fingerprint()],
            "node": self.node,
            "engine": self.engine,
            "path": self.path,
            "args": list(self.args),
            "env": _json_hash(list(self.env)),
            "packages": self.packages,
            **({"stdin": self.stdin} if self.stdin else {}),
            **({"stdio": self.stdio} if self.stdio else {}),
        }


def base_key(environment: Environment, nb: Notebook) -> str:
    return _json_hash({**environment.parts(), "kind": nb.kind.kind})


def prefix_ends(nb: Notebook) -> dict[int, int]:
    """Cell index -> the end byte of the file text that prefix 1..k compiles."""
    return {cell.index: cell.span.end_byte for cell in nb.code_cells}


def prefix_keys(base: str, nb: Notebook) -> dict[int, str]:
    """Cell index -> key of the prefix ending with that (code) cell."""
    keys: dict[int, str] = {}
    key, start = base, 0
    for index, end in prefix_ends(nb).items():
        key = sha256(f"{key}:{index}:".encode() + nb.data[start:end])
        keys[index] = key
        start = end
    return keys


@dataclass(frozen=True)
class NotebookKeys:
    """Every key of one notebook in one environment: of each prefix of its cells, and of
    the whole run (a stored run of exactly this text)."""

    environment: Environment
    base: str
    prefixes: dict[int, str]  # cell index -> key of the prefix ending with that cell
    full: str

    @classmethod
    def of(
        cls, environment: Environment, nb: Notebook, extra: dict[str, str] | None = None
    ) -> NotebookKeys:
        """`extra`: what else an engine's snapshots depend on (docker: image, project)."""
        base = base_key(environment, nb)
        if extra:
            base = sha256(f"{base}:{json.dumps(extra, sort_keys=True)}".encode())
        full = sha256(f"{base}:run:{environment.inspect}:{sha256(nb.data)}".encode())
        return cls(environment, base, prefix_keys(base, nb), full)


def explain(old: dict[str, object], new: dict[str, object]) -> list[str]:
    """Names of the base-key parts that differ between two `Environment.parts()` dicts."""
    return [name for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]


def file_hash(path: str) -> str | None:
    try:
        return sha256(Path(path).read_bytes())
    except OSError:
        return None


def modules_still_valid(modules: dict[str, str]) -> str | None:
    """None if every recorded local module still has its recorded content; else its path."""
    for path, digest in sorted(modules.items()):
        if file_hash(path) != digest:
            return path
    return None
