"""The shape of the exported package: where each file goes, its module type, its name,
version and entry points, and which files must never be part of it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tonic.errors import ExportError, InputError
from tonic.export.deps import Graph, shown
from tonic.export.ignore import IgnoreRules
from tonic.export.names import npm_name_problem, sanitize, version_problem
from tonic.notebook.loader import load
from tonic.notebook.modkind import package_type
from tonic.store import default_root

DEFAULT_VERSION = "0.1.0"


@dataclass(frozen=True)
class Layout:
    """Files inside the package: originals at their paths relative to `base`, plus the
    package.json files of sub-folders (their "type" only) that governed some of them."""

    base: Path
    files: dict[Path, str]  # original (absolute) -> POSIX path in the package
    manifests: dict[str, bytes]  # nested package.json path in the package -> content
    type: str | None  # the root package.json's "type"; None: node detects per file


def _read(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _nearest_manifest(path: Path, stop: Path) -> Path | None:
    """The package.json governing `path` found strictly below `stop`, if any."""
    for directory in path.parents:
        if directory == stop or stop not in directory.parents:
            return None
        if (directory / "package.json").is_file():
            return directory / "package.json"
    return None


def layout(graph: Graph) -> Layout:
    base = Path(os.path.commonpath([str(p.parent) for p in graph.files]))
    files = {p: p.relative_to(base).as_posix() for p in graph.files}
    manifests: dict[str, bytes] = {}
    at_root: list[Path] = []
    for path in graph.files:
        nested = _nearest_manifest(path, base)
        if nested is None:
            at_root.append(path)
            continue
        rel = nested.relative_to(base).as_posix()
        kind = _read(nested).get("type")
        content = {"type": kind} if isinstance(kind, str) else {}
        manifests[rel] = (json.dumps(content, indent=2) + "\n").encode()
    return Layout(base, files, manifests, _root_type(base, at_root))


def _root_type(base: Path, files: list[Path]) -> str | None:
    declared, manifest = package_type(base / "package.json")
    if manifest is not None and declared in ("module", "commonjs"):
        return declared
    kinds = {_kind(p) for p in files if p.suffix == ".js"}
    if kinds == {"esm"}:
        return "module"
    if kinds <= {"cjs"}:
        return "commonjs"
    return None  # both kinds of .js file: leave it to node's detection, as before


def _kind(path: Path) -> str:
    try:
        return load(path)[1].kind.kind
    except InputError:  # an empty module: node calls it CommonJS
        return "cjs"


def project_of(notebook: Path) -> Path | None:
    """The folder of the package.json that governs the notebook (its project)."""
    _, manifest = package_type(notebook)
    return manifest.parent if manifest is not None else None


def choose_name(
    given: str | None, main: Path, project: Path | None, builtins: frozenset[str]
) -> str:
    """--name, else the main notebook's file name made valid, else the project's name."""
    if given is not None:
        problem = npm_name_problem(given, builtins)
        if problem is not None:
            raise ExportError(f"{given!r} is not a valid npm package name: {problem}")
        return given
    candidates = [sanitize(main.stem)]
    if project is not None:
        name = _read(project / "package.json").get("name")
        if isinstance(name, str):
            candidates.append(name)
    for candidate in candidates:
        if candidate and npm_name_problem(candidate, builtins) is None:
            return candidate
    raise ExportError(
        f"no valid npm package name can be made from {main.name!r}; give one with --name"
    )


def choose_version(given: str | None, project: Path | None) -> str:
    """--version, else the project's package.json version, else 0.1.0."""
    if given is not None:
        problem = version_problem(given)
        if problem is not None:
            raise ExportError(f"--version: {problem}")
        return given
    if project is not None:
        version = _read(project / "package.json").get("version")
        if isinstance(version, str) and version_problem(version) is None:
            return version
    return DEFAULT_VERSION


def exports_map(notebooks: list[str]) -> dict[str, str]:
    """`.` is the first notebook; every notebook also on its own path, with and without
    its extension; and package.json, which tools read."""
    entries = {".": f"./{notebooks[0]}"}
    for rel in notebooks:
        entries[f"./{rel.rsplit('.', 1)[0]}"] = f"./{rel}"
        entries[f"./{rel}"] = f"./{rel}"
    entries["./package.json"] = "./package.json"
    return entries


def ignore_root(base: Path, project: Path | None) -> Path:
    """Where ignore files are read from: the git work tree, else the project (or base)."""
    for directory in (base, *base.parents):
        if (directory / ".git").exists():
            return directory
    if project is not None and (project == base or project in base.parents):
        return project
    return base


def never_exported(path: Path, rules: IgnoreRules) -> str | None:
    """Why `path` must stay out of any package, or None."""
    if path.name == ".env" or path.name.startswith(".env."):
        return "is a .env file"
    cache = default_root().resolve()
    if cache in path.parents:
        return "is in tonic's snapshot cache"
    rule = rules.excluded(path)
    if rule is not None:
        return f"is excluded by {shown(rule.source)} (line {rule.line}: {rule.pattern})"
    return None


def check_exportable(graph: Graph, rules: IgnoreRules) -> None:
    """Refuse a required file that must stay out: by its path, or by its target when it
    is a symlink (a link to a .env file is a .env file)."""
    for path in graph.files:
        real = graph.real.get(path, path)
        reason = never_exported(path, rules)
        if reason is None and real != path:
            reason = never_exported(real, rules)
        if reason is None:
            continue
        named = shown(path) if real == path else f"{shown(path)} (a symlink to {shown(real)})"
        by = graph.required_by.get(path)
        subject = f"{by}: requires {named}, which" if by else named
        raise ExportError(f"{subject} {reason}: tonic never exports it")
