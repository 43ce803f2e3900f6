"""What a set of notebooks needs: local modules, followed transitively, and packages.

Specifiers come from tonic's cell parser (`require`, `import`, `export ... from`,
`import()` with a literal string). A relative specifier is resolved as node resolves it
(the exact file, then `.js`, `.json`, `.node`, `.cjs`, `.mjs`, then a directory's
package.json `main` or its `index.*`); a bare one names a package unless it is a node core
module. A package's version is the one installed (`node_modules/<name>/package.json`,
found from the requiring file upwards), else the lock file's, else the range the
project's package.json declares; a package none of them knows is an error.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tonic.errors import ExportError
from tonic.export.links import (
    Skipped,
    check_copy,
    dangling,
    lexical,
    through_link,
    unfollowed,
)
from tonic.notebook.cells import parse
from tonic.notebook.modkind import package_type
from tonic.notebook.source import read_source
from tonic.settings import node_binary

SCRIPT_SUFFIXES = (".js", ".cjs", ".mjs", ".ts", ".cts", ".mts")  # whose requires count
FILE_SUFFIXES = (".js", ".json", ".node", ".cjs", ".mjs")
DEPENDENCY_FIELDS = (
    "dependencies",
    "optionalDependencies",
    "peerDependencies",
    "devDependencies",
)


@functools.cache
def node_builtins() -> frozenset[str]:
    """node's core module names (`fs`, `fs/promises`, ...), asked of node once."""
    proc = subprocess.run(
        [node_binary(), "-p", "JSON.stringify(require('module').builtinModules)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ExportError(f"node could not list its core modules: {proc.stderr.strip()}")
    return frozenset(json.loads(proc.stdout))


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory if inside."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    source: str  # node_modules | lock file | package.json
    required_at: str  # file:line of the first require


@dataclass
class Graph:
    """The files to export (notebooks first, then local modules in the order found), each
    at the path it is required by (symlinks not followed: where the package has it), and
    the packages they require; the files left out as symlinks out of the project."""

    files: list[Path] = field(default_factory=list)
    real: dict[Path, Path] = field(default_factory=dict)  # file -> its target, links followed
    packages: dict[str, Package] = field(default_factory=dict)
    required_by: dict[Path, str] = field(default_factory=dict)  # local module -> file:line
    skipped: list[Skipped] = field(default_factory=list)


def classify(specifier: str) -> str:
    """local | builtin | package | skip (URLs, package `#imports`)."""
    if specifier.startswith("node:") or specifier in node_builtins():
        return "builtin"
    if specifier in (".", "..") or specifier.startswith(("./", "../", "/")):
        return "local"
    if specifier.startswith("file:"):
        return "local"
    if specifier.startswith(("#", "data:", "http:", "https:")):
        return "skip"
    return "package"


def package_name(specifier: str) -> str:
    """`@scope/name/sub/path` -> `@scope/name`, `name/sub` -> `name`."""
    parts = specifier.split("/")
    return "/".join(parts[:2]) if specifier.startswith("@") else parts[0]


def _as_file(candidate: Path) -> Path | None:
    if candidate.is_file():
        return candidate
    for suffix in FILE_SUFFIXES:
        with_suffix = candidate.with_name(candidate.name + suffix)
        if with_suffix.is_file():
            return with_suffix
    return None


def _as_directory(candidate: Path) -> Path | None:
    if not candidate.is_dir():
        return None
    manifest = candidate / "package.json"
    if manifest.is_file():
        try:
            main = json.loads(manifest.read_text(encoding="utf-8")).get("main")
        except (OSError, ValueError, AttributeError):
            main = None
        if isinstance(main, str) and main:
            target = candidate / main
            found = _as_file(target) or _as_index(target)
            if found is not None:
                return found
    return _as_index(candidate)


def _as_index(directory: Path) -> Path | None:
    for suffix in FILE_SUFFIXES:
        index = directory / f"index{suffix}"
        if index.is_file():
            return index
    return None


def resolve_local(directory: Path, specifier: str) -> Path | None:
    """The file a relative specifier names, seen from `directory`, as node finds it: the
    path it is found at (`..` removed as text, symlinks not followed), or None."""
    candidate = lexical(directory / specifier)
    if specifier.endswith("/") or specifier in (".", ".."):
        found = _as_directory(candidate)
    else:
        found = _as_file(candidate) or _as_directory(candidate)
    return lexical(found) if found is not None else None


def specifiers(path: Path) -> Iterator[tuple[str, int]]:
    """(specifier, line) of every literal require/import in a script file."""
    if path.suffix not in SCRIPT_SUFFIXES:
        return
    source = read_source(path, allow_empty=True)
    ptype, _ = package_type(source.path)
    nb = parse(source.data, filename=path.name, package_type=ptype)
    for cell in nb.cells:
        for dep in cell.dependencies:
            yield dep.specifier, dep.line


def _read_json(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def installed_version(name: str, directory: Path) -> str | None:
    """The version of `name` node would load from `directory` (node_modules upwards)."""
    for parent in (directory, *directory.parents):
        manifest = parent / "node_modules" / name / "package.json"
        if manifest.is_file():
            version = _read_json(manifest).get("version")
            return version if isinstance(version, str) and version else None
    return None


def lock_version(name: str, project: Path | None) -> str | None:
    if project is None:
        return None
    for lock_name in ("package-lock.json", "npm-shrinkwrap.json"):
        lock = _read_json(project / lock_name)
        packages = lock.get("packages")
        if isinstance(packages, dict):
            entry = packages.get(f"node_modules/{name}")
            if isinstance(entry, dict) and isinstance(entry.get("version"), str):
                return str(entry["version"])
        deps = lock.get("dependencies")  # lockfileVersion 1
        if isinstance(deps, dict):
            entry = deps.get(name)
            if isinstance(entry, dict) and isinstance(entry.get("version"), str):
                return str(entry["version"])
    return None


def declared_range(name: str, project: Path | None) -> str | None:
    if project is None:
        return None
    manifest = _read_json(project / "package.json")
    for section in DEPENDENCY_FIELDS:
        deps = manifest.get(section)
        if isinstance(deps, dict) and isinstance(deps.get(name), str):
            return str(deps[name])
    return None


def package_version(name: str, requirer: Path, project: Path | None) -> tuple[str, str] | None:
    """(version, where it came from) for a package `requirer` requires, or None."""
    version = installed_version(name, requirer.parent)
    if version is not None:
        return version, "node_modules"
    version = lock_version(name, project)
    if version is not None:
        return version, "lock file"
    version = declared_range(name, project)
    if version is not None:
        return version, "package.json"
    return None


def _missing(directory: Path, specifier: str, where: str) -> ExportError:
    candidate = lexical(directory / specifier)
    if dangling(candidate):
        return ExportError(
            f"{where}: requires {specifier!r}, a symlink to {os.readlink(candidate)}, "
            "which does not exist"
        )
    return ExportError(
        f"{where}: requires {specifier!r}, which does not exist (looked in {shown(directory)})"
    )


def _local(path: Path, real: Path, specifier: str, where: str) -> Path:
    """The file a relative require names, where the package will have it. node looks
    from the requiring file's target; its copy in the package must find the same file."""
    if specifier.startswith(("/", "file:")):
        raise ExportError(
            f"{where}: requires {specifier!r} by an absolute path, which an "
            "installed package cannot have; use a relative path"
        )
    found = resolve_local(real.parent, specifier)  # what node found, running the notebook
    if found is None:
        raise _missing(real.parent, specifier, where)
    if path.parent == real.parent:
        return found
    copied = resolve_local(path.parent, specifier)  # what the package's copy will find
    if copied is None or copied.resolve() != found.resolve():
        raise ExportError(
            f"{where}: {shown(path)} is a symlink to {shown(real)}, whose require("
            f"{specifier!r}) finds {shown(found)}; a package holds no symlinks, and its copy "
            f"of {shown(path)} would not find that file; require {shown(real)} itself"
        )
    return copied


def _package(graph: Graph, specifier: str, real: Path, project: Path | None, where: str) -> None:
    name = package_name(specifier)
    if name in graph.packages:
        return
    found = package_version(name, real, project)
    if found is None:
        raise ExportError(
            f"{where}: requires package {name!r}, which is not installed (not in "
            f"node_modules, the lock file or package.json); run `npm install {name}`"
        )
    graph.packages[name] = Package(name, found[0], found[1], where)


def collect(notebooks: list[Path], project: Path | None, root: Path) -> Graph:
    """Follow the notebooks' local requires transitively and gather their packages; a
    file reached through a symlink out of `root` is left out (`links.py`)."""
    graph = Graph()
    queue = [p.resolve() for p in notebooks]
    graph.real.update((p, p) for p in queue)
    seen = set(queue)
    while queue:
        path = queue.pop(0)
        real = graph.real[path]
        graph.files.append(path)
        for specifier, line in specifiers(real):
            where = f"{shown(path)}:{line}"
            kind = classify(specifier)
            if kind == "package":
                _package(graph, specifier, real, project, where)
            if kind != "local":
                continue
            target = _local(path, real, specifier, where)
            if target in seen:
                continue
            seen.add(target)
            resolved = target.resolve()
            if "node_modules" in target.parts or "node_modules" in resolved.parts:
                continue
            why = unfollowed(resolved, root) if through_link(target) else None
            if why is not None:
                graph.skipped.append(Skipped(target, resolved, where, why))
                continue
            check_copy(target, resolved, shown(target), shown(resolved))
            graph.real[target] = resolved
            graph.required_by[target] = where
            queue.append(target)
    return graph
