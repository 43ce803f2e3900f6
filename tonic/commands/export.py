"""`tonic export FILE... -o DIR`: a notebook (and what it requires) as an npm package;
`tonic export --html FILE -o PAGE`: its recorded run as one static page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tonic.errors import ExportError
from tonic.export.deps import Graph, collect, node_builtins, shown
from tonic.export.ignore import IgnoreRules
from tonic.export.links import project_root
from tonic.export.package import (
    check_exportable,
    choose_name,
    choose_version,
    exports_map,
    ignore_root,
    layout,
    project_of,
)
from tonic.export.page import render_page, write_page
from tonic.export.render import (
    TEST_PATH,
    NotebookRun,
    description,
    render_package_json,
    render_readme,
    render_test,
)
from tonic.export.secrets import dotenv_files, leaks, secrets
from tonic.export.write import check_output, npm_pack, publish
from tonic.notebook.loader import load
from tonic.notebook.source import NOTEBOOK_KINDS, NOTEBOOK_SUFFIXES
from tonic.notebook.syntax import is_typescript
from tonic.recorded import failure, record, record_environment
from tonic.settings import node_binary


def node_range() -> str:
    """engines.node: at least the node that ran the notebooks."""
    proc = subprocess.run([node_binary(), "--version"], capture_output=True, text=True)
    return f">={proc.stdout.strip().lstrip('v')}"


def _notebooks(files: list[Path]) -> list[Path]:
    """The notebooks' resolved paths, each once, in order; refused: a non-notebook."""
    notebooks: list[Path] = []
    for file in files:
        source, _ = load(file)
        if source.path.suffix not in NOTEBOOK_SUFFIXES:
            raise ExportError(f"{file}: not {NOTEBOOK_KINDS} notebook")
        if source.path not in notebooks:
            notebooks.append(source.path)
    return notebooks


def _run(path: Path, rel: str, *, cleanly: bool = True) -> NotebookRun:
    """The notebook's run (an unchanged one replays its stored run); `cleanly`: it must
    not fail."""
    result = record(path)
    problem = failure(result, path, shown(path), None)
    if problem is not None and cleanly:
        raise ExportError(
            f"{shown(path)}: {problem.describe()}; a notebook must run cleanly to be exported"
        )
    return NotebookRun(rel, path, result.notebook, result)


def warn(text: str) -> None:
    sys.stderr.write(f"tonic: warning: {text}\n")


def _secret_warnings(
    runs: list[NotebookRun],
    notebooks: list[Path],
    root: Path,
    *,
    with_tests: bool,
    shown_in: str | None = None,
) -> None:
    """Warn of recorded outputs that hold the value of a variable of the environment the
    notebooks ran in, or of a .env entry of the project (`export/secrets.py`)."""
    dotenvs = [(p, shown(p)) for p in dotenv_files([root, *(p.parent for p in notebooks)])]
    found = secrets(record_environment(os.environ), dotenvs)
    for text in leaks(runs, found, with_tests=with_tests, shown_in=shown_in):
        warn(text)


def _report(
    package: str,
    out: Path,
    files: dict[Path, str],
    graph: Graph,
    notebooks: list[Path],
    dependencies: list[dict[str, str]],
) -> None:
    """What was exported, and why each file is there."""
    print(f"exported {package} to {shown(out)}")
    for path, rel in files.items():
        why = "notebook" if path in notebooks else f"required by {graph.required_by[path]}"
        if graph.real[path] != path:
            why += f"; a copy of {shown(graph.real[path])}, which its symlink points to"
        print(f"  {rel}  ({why})")
    for dep in dependencies:
        print(f"  dependency {dep['name']} {dep['version']} (from {dep['source']})")
    if any(is_typescript(path.name) for path in notebooks):
        print(
            "note: node strips no types under node_modules: the TypeScript notebooks run "
            "from the package's folder (`node FILE`), not as a dependency's code",
            file=sys.stderr,
        )


def export(
    files: list[Path],
    *,
    out: Path,
    name: str | None,
    version: str | None,
    tarball: bool,
    with_tests: bool,
    force: bool,
    outputs: bool = True,
) -> int:
    notebooks = _notebooks(files)
    main = notebooks[0]
    project = project_of(main)
    pkg_name = choose_name(name, main, project, node_builtins())
    pkg_version = choose_version(version, project)
    out = out.resolve()
    check_output(out, force=force, protected=notebooks)

    root = project_root(main, project)
    graph = collect(notebooks, project, root)
    check_output(out, force=force, protected=[*graph.files, *graph.real.values()])
    shape = layout(graph)
    check_exportable(graph, IgnoreRules(ignore_root(shape.base, project)))
    for skipped in graph.skipped:
        warn(skipped.warning(shown(skipped.path), shown(skipped.target)))

    runs = [_run(path, shape.files[path]) for path in notebooks]
    if outputs:
        _secret_warnings(runs, notebooks, root, with_tests=with_tests)
    rels = [shape.files[p] for p in notebooks]
    dependencies = [
        {"name": p.name, "version": p.version, "source": p.source}
        for p in sorted(graph.packages.values(), key=lambda p: p.name)
    ]
    summary = description(runs)
    content: dict[str, bytes] = {rel: path.read_bytes() for path, rel in shape.files.items()}
    content.update(shape.manifests)
    content["package.json"] = render_package_json(
        name=pkg_name,
        version=pkg_version,
        description=summary,
        main=f"./{rels[0]}",
        exports=exports_map(rels),
        type=shape.type,
        files=sorted({*shape.files.values(), *shape.manifests}),
        scripts={"test": f"node --test {TEST_PATH}"} if with_tests else {},
        dependencies={d["name"]: d["version"] for d in dependencies},
        node_range=node_range(),
    ).encode()
    content["README.md"] = render_readme(
        pkg_name, rels[0], summary, runs, dependencies, outputs=outputs
    ).encode()
    if with_tests:
        content[TEST_PATH] = render_test(runs, outputs=outputs).encode()
    publish(out, content, force=force)

    _report(f"{pkg_name}@{pkg_version}", out, shape.files, graph, notebooks, dependencies)
    if with_tests:
        checks = "the recorded outputs" if outputs else "the recorded exit codes"
        print(f"  {TEST_PATH}  (node --test: {checks})")
    if tarball:
        print(shown(npm_pack(out)))
    return 0


def export_html(files: list[Path], *, out: Path, force: bool, outputs: bool = True) -> int:
    """One notebook's recorded run as the page `out` (an unchanged notebook replays its
    stored run: nothing runs); a cell that threw shows node's report there."""
    notebooks = _notebooks(files)
    if len(notebooks) != 1:
        raise ExportError(f"--html exports one notebook (a page each); got {len(notebooks)}")
    path = notebooks[0]
    out = out.resolve()
    write_page(out, "", force=force, protected=notebooks, dry=True)
    run = _run(path, path.name, cleanly=False)
    if outputs:
        root = project_root(path, project_of(path))
        _secret_warnings([run], notebooks, root, with_tests=False, shown_in="the page's outputs")
    write_page(out, render_page(run, outputs=outputs), force=force, protected=notebooks)
    how = "its stored run: unchanged, nothing ran" if run.result.stored else "after a run"
    print(f"exported {shown(path)} to {shown(out)} ({how})")
    return 0
