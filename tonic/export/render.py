"""Renders the package's generated files from the jinja2 templates in `templates/`.

The templates live in the repository's `templates/` folder (next to the package in a
source checkout or an editable install) and inside the wheel as `tonic/templates`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

import tonic
from tonic.errors import ExportError
from tonic.notebook.cells import MARKER_RE, Cell, Notebook
from tonic.outputs import normalize
from tonic.recorded import cell_label, error_summary
from tonic.results import CellResult, RunResult

PACKAGE_JSON = "package.json.j2"
README = "README.md.j2"
TEST = "tonic-outputs.test.cjs.j2"
TEST_PATH = "test/tonic-outputs.test.cjs"


def templates_dir() -> Path:
    """The repository's `templates/` (source checkout), else the wheel's `tonic/templates`."""
    package = Path(tonic.__file__).resolve().parent
    for candidate in (package.parent / "templates", package / "templates"):
        if (candidate / PACKAGE_JSON).is_file():
            return candidate
    raise ExportError(f"tonic's export templates are missing (looked next to {package})")


def _json(value: object, indent: int | None = None, shift: int | None = None) -> str:
    """JSON text; with `indent`, lines after the first are shifted right by `shift`
    (default: `indent`, for a value nested one level inside the template's object)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    pad = indent if shift is None else shift
    if pad:
        text = text.replace("\n", "\n" + " " * pad)
    return text


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in `text` (at least three)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["json"] = _json
    env.filters["fence"] = _fence
    return env


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)


def render_package_json(**context: object) -> str:
    text = render(PACKAGE_JSON, **context)
    json.loads(text)  # a template bug must not produce a broken package
    return text


@dataclass(frozen=True)
class NotebookRun:
    """A notebook as it goes into the package: its path there, parse and recorded run."""

    rel: str  # POSIX path inside the package
    path: Path  # absolute path of the original
    notebook: Notebook
    result: RunResult

    @property
    def stem(self) -> str:
        return self.rel.rsplit(".", 1)[0]

    def text(self, data: bytearray | str | None) -> str:
        if not data:
            return ""
        raw = data if isinstance(data, str) else data.decode("utf-8", "replace")
        return normalize(raw, self.path.parent)

    def stdout(self) -> str:
        """Everything the run printed on stdout, as `node FILE` prints it."""
        return "".join(self.text(cr.stdout) for cr in self.result.cells) + self.text(
            self.result.tail.stdout
        )


def code_of(cell: Cell) -> str:
    """A cell's source without its `// %%` marker line."""
    lines = cell.source.splitlines()
    if lines and MARKER_RE.match(lines[0].rstrip()):
        lines = lines[1:]
    return "\n".join(lines).strip("\n")


def readme_cells(run: NotebookRun, *, outputs: bool = True) -> list[dict[str, object]]:
    cells: list[dict[str, object]] = []
    for cr in run.result.cells:
        cell = cr.cell
        if cell.type == "markdown":
            cells.append({"type": "markdown", "prose": cell.prose or ""})
            continue
        code = code_of(cell)
        if not code:
            continue
        output = "".join(text for text, _ in cell_texts(run, cr)) if outputs else ""
        cells.append({"type": "code", "title": cell.title, "code": code, "output": output.rstrip()})
    return cells


def cell_texts(run: NotebookRun, cr: CellResult) -> list[tuple[str, bool]]:
    """What the package shows of a cell's run, in order: (text, also in the test file)."""
    parts = [(run.text(cr.stdout), True), (run.text(cr.stderr), False)]
    if cr.value is not None:
        parts.append((f"=> {run.text(cr.value)}\n", False))
    if cr.error is not None:
        parts.append((f"Uncaught {error_summary(run.text(cr.error))}\n", False))
    return parts


def recorded_texts(run: NotebookRun) -> list[tuple[str, str, bool]]:
    """Every recorded text an export with outputs writes: (where: a cell's label or
    `after the last cell`, text, whether the test file holds it too)."""
    texts = [
        (cell_label(run.result, cr.cell.index), text, in_test)
        for cr in run.result.cells
        for text, in_test in cell_texts(run, cr)
    ]
    tail = run.result.tail
    texts.append(("after the last cell", run.text(tail.stdout), True))
    texts.append(("after the last cell", run.text(tail.stderr), False))
    return [t for t in texts if t[1]]


def description(runs: list[NotebookRun]) -> str:
    """The first line of the main notebook's first prose cell, else a plain sentence."""
    for cell in runs[0].notebook.cells:
        if cell.type == "markdown" and cell.prose:
            for line in cell.prose.splitlines():
                line = line.strip().lstrip("#").strip()
                if line:
                    return line
    return f"The notebook {runs[0].rel}, exported by tonic"


def render_readme(
    name: str,
    main: str,
    summary: str,
    runs: list[NotebookRun],
    dependencies: list[dict[str, str]],
    *,
    outputs: bool = True,
) -> str:
    notebooks = [
        {
            "path": run.rel,
            "stem": run.stem,
            "cells": readme_cells(run, outputs=outputs),
            "after": (run.text(run.result.tail.stdout) + run.text(run.result.tail.stderr)).rstrip()
            if outputs
            else "",
        }
        for run in runs
    ]
    text = render(
        README,
        name=name,
        main=main,
        description=summary,
        notebooks=notebooks,
        dependencies=dependencies,
        outputs=outputs,
    )
    return text.rstrip("\n") + "\n"


def render_test(runs: list[NotebookRun], *, outputs: bool = True) -> str:
    """The `node --test` file: each notebook's exit code, and with the outputs its stdout."""
    recorded: list[dict[str, object]] = []
    for run in runs:
        entry: dict[str, object] = {"file": run.rel}
        if outputs:
            entry["stdout"] = run.stdout()
        entry["exit_code"] = run.result.exit_code
        recorded.append(entry)
    return render(TEST, recorded=recorded, outputs=outputs)
