"""`tonic export FILE... -o DIR`: a notebook (and what it requires) as an npm package."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tonic.errors import ExportError
from tonic.export.deps import collect, node_builtins, shown
from tonic.export.ignore import IgnoreRules
from tonic.export.package import (
    check_exportable,
    choose_name,
    choose_version,
    exports_map,
    ignore_root,
    layout,
    project_of,
)
from tonic.export.render import (
    TEST_PATH,
    NotebookRun,
    description,
    render_package_json,
    render_readme,
    render_test,
)
from tonic.export.write import check_output, npm_pack, publish
from tonic.notebook.loader import load
from tonic.recorded import failure, record
from tonic.settings import node_binary

NOTEBOOK_SUFFIXES = (".js", ".cjs", ".mjs")


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
            raise ExportError(f"{file}: not a .js, .cjs or .mjs notebook")
        if source.path not in notebooks:
            notebooks.append(source.path)
    return notebooks


def _run(path: Path, rel: str) -> NotebookRun:
    """The notebook's run (an unchanged one replays its stored run); it must not fail."""
    result = record(path)
    problem = failure(result, path, shown(path), None)
    if problem is not None:
        raise ExportError(
            f"{shown(path)}: {problem.describe()}; a notebook must run cleanly to be exported"
        )
    return NotebookRun(rel, path, result.notebook, result)


def export(
    files: list[Path],
    *,
    out: Path,
    name: str | None,
    version: str | None,
    tarball: bool,
    with_tests: bool,
    force: bool,
) -> int:
    notebooks = _notebooks(files)
    main = notebooks[0]
    project = project_of(main)
    pkg_name = choose_name(name, main, project, node_builtins())
    pkg_version = choose_version(version, project)
    out = out.resolve()
    check_output(out, force=force, protected=notebooks)

    graph = collect(notebooks, project)
    check_output(out, force=force, protected=graph.files)
    shape = layout(graph)
    check_exportable(graph, IgnoreRules(ignore_root(shape.base, project)))

    runs = [_run(path, shape.files[path]) for path in notebooks]
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
    content["README.md"] = render_readme(pkg_name, rels[0], summary, runs, dependencies).encode()
    if with_tests:
        content[TEST_PATH] = render_test(runs).encode()
    publish(out, content, force=force)

    print(f"exported {pkg_name}@{pkg_version} to {shown(out)}")
    for path, rel in shape.files.items():
        why = "notebook" if path in notebooks else f"required by {graph.required_by[path]}"
        print(f"  {rel}  ({why})")
    for dep in dependencies:
        print(f"  dependency {dep['name']} {dep['version']} (from {dep['source']})")
    if with_tests:
        print(f"  {TEST_PATH}  (node --test: the recorded outputs)")
    if tarball:
        print(shown(npm_pack(out)))
    return 0
