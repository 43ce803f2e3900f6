"""Parser tests: inline tables (source -> cells, declarations, references, requires) and
golden files for the fixtures in fixtures/parser (set TONIC_UPDATE_GOLDEN=1 to rewrite)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, node
from tonic.commands.cells import to_json
from tonic.notebook.cells import parse

PARSER = FIXTURES / "parser"
GOLDEN = FIXTURES / "expected" / "parser"


@dataclass(frozen=True)
class CellCase:
    name: str
    source: str
    lines: list[tuple[int, int]]  # each cell's (start line, end line)
    declarations: list[list[str]] = field(default_factory=list)  # "kind name" per cell
    references: list[list[str]] | None = None
    dependencies: list[list[str]] | None = None  # "kind specifier" per cell
    types: list[str] | None = None
    titles: list[str | None] | None = None
    filename: str = "nb.js"


CASES = [
    CellCase(
        "one statement per group",
        "const a = 1;\n\nlet b = a + 1;\n",
        [(1, 1), (3, 3)],
        [["const a"], ["let b"]],
        references=[[], ["a"]],
    ),
    CellCase(
        "statements without a blank line stay together",
        "var x = 1;\nx++;\nfunction f() {}\n\nclass K {}\n",
        [(1, 3), (5, 5)],
        [["var x", "function f"], ["class K"]],
    ),
    CellCase(
        "leading comments attach below, trailing comments above",
        "// about a\n\nconst a = 1;\n\n// the end\n",
        [(1, 5)],
        [["const a"]],
    ),
    CellCase(
        "a blank line inside a template literal does not split",
        "const t = `a\n\nb`;\n\nt\n",
        [(1, 3), (5, 5)],
        [["const t"], []],
        references=[[], ["t"]],
    ),
    CellCase(
        "a blank line inside a function does not split",
        "function f() {\n  let a = 1;\n\n  return a;\n}\n\nf()\n",
        [(1, 5), (7, 7)],
        [["function f"], []],
    ),
    CellCase(
        "destructuring declares every bound name",
        "const { a, b: [c, ...d], e = 1, ...f } = o;\n",
        [(1, 1)],
        [["const a", "const c", "const d", "const e", "const f"]],
        references=[["o"]],
    ),
    CellCase(
        "var in loops and blocks is module scope; inside functions it is not",
        "for (var i = 0; i < 2; i++) {}\nfor (var k in {}) {}\n"
        "if (1) { var z = 1 }\nfunction g() { var hidden }\n",
        [(1, 4)],
        [["var i", "var k", "var z", "function g"]],
    ),
    CellCase(
        "require, import and import() specifiers",
        "const fs = require('fs');\nconst p = import(\"./p.mjs\");\nrequire(name);\n"
        "require(`./t.js`);\n",
        [(1, 4)],
        [["const fs", "const p"]],
        dependencies=[["require fs", "dynamic-import ./p.mjs", "require ./t.js"]],
    ),
    CellCase(
        "ESM imports and exports",
        "import d, * as ns from 'm';\nimport { a as b, c } from \"n\";\n"
        "export { x } from './x.mjs';\nexport const y = 1;\nexport default function main() {}\n",
        [(1, 5)],
        [["import d", "import ns", "import b", "import c", "const y", "function main"]],
        dependencies=[["import m", "import n", "export-from ./x.mjs"]],
        filename="nb.mjs",
    ),
    CellCase(
        "percent markers, titles and markdown cells",
        "// %% First\nconst a = 1;\n\n// %% [markdown]\n// Some *prose*.\n\n"
        "// %% Second [md]\n// more prose\n\n// %%\na\n",
        [(1, 2), (4, 5), (7, 8), (10, 11)],
        [["const a"], [], [], []],
        types=["code", "markdown", "markdown", "code"],
        titles=["First", None, "Second", None],
    ),
    CellCase(
        "a marker inside a template literal or not at column 0 is no marker",
        "const s = `\n// %% no\n`;\n  // %% indented\nlet b;\n",
        [(1, 5)],
        [["const s", "let b"]],
    ),
    CellCase(
        "text before the first marker is a cell",
        "'use strict';\n// %% one\nlet a;\n",
        [(1, 1), (2, 3)],
        [[], ["let a"]],
    ),
    CellCase(
        "a file of comments only is one cell with nothing to run",
        "// just a comment\n\n/* and another */\n",
        [(1, 3)],
        [[]],
    ),
]


def _decls(cells_json: list[dict[str, object]]) -> list[list[str]]:
    out = []
    for c in cells_json:
        decls = c["declarations"]
        assert isinstance(decls, list)
        out.append([f"{d['kind']} {d['name']}" for d in decls])
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_split(case: CellCase) -> None:
    nb = parse(case.source.encode(), filename=case.filename)
    assert nb.clean
    got = [c.to_json() for c in nb.cells]
    assert [(c.span.start_line, c.span.end_line) for c in nb.cells] == case.lines
    assert _decls(got) == case.declarations
    if case.references is not None:
        assert [list(c.references) for c in nb.cells] == case.references
    if case.dependencies is not None:
        assert [[f"{d.kind} {d.specifier}" for d in c.dependencies] for c in nb.cells] == (
            case.dependencies
        )
    if case.types is not None:
        assert [c.type for c in nb.cells] == case.types
    if case.titles is not None:
        assert [c.title for c in nb.cells] == case.titles


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cells_cover_the_file_exactly(case: CellCase) -> None:
    """Cells never overlap, and between them there is only whitespace."""
    data = case.source.encode()
    nb = parse(data, filename=case.filename)
    pos = 0
    for cell in nb.cells:
        assert data[pos : cell.span.start_byte].strip() == b""
        assert cell.source.encode() == data[cell.span.start_byte : cell.span.end_byte]
        pos = cell.span.end_byte
    assert data[pos:].strip() == b""


def test_columns_count_characters() -> None:
    nb = parse("const é = 'ü';\n\né\n".encode(), filename="nb.js")
    last = nb.cells[1].last_expression
    assert last is not None
    assert (last.start_line, last.start_col, last.end_col) == (3, 1, 2)
    first = nb.cells[0].span
    assert (first.start_col, first.end_col) == (1, 15)


def test_parse_error_is_reported_not_raised() -> None:
    nb = parse(b"let a = ;\n\nlet b = 1;\n", filename="nb.js")
    assert not nb.clean
    assert nb.parse_errors[0].start_line == 1
    assert nb.unsplit == "tree-sitter could not parse line 1"


@pytest.mark.parametrize(
    "source",
    [
        "var __tonic__ = 1;\n\nconsole.log(__tonic__);\n",
        "console.log(1);\n\nconsole.log(globalThis['__tonic__']);\n",
        "// __tonic__ in a comment\nconsole.log(1);\n",
        "__tonic_suffix_1__: {\n  console.log(1);\n}\n",
    ],
)
def test_a_file_naming_the_pause_sites_runs_unsplit(source: str) -> None:
    """`__tonic__` anywhere (the pause sites' name), or a continuation's label: one piece."""
    nb = parse(source.encode(), filename="nb.js")
    assert not nb.clean
    assert nb.unsplit is not None and "__tonic__" in nb.unsplit
    assert parse(b"var tonic = 1;\n\nvar __tonic = 2;\n", filename="nb.js").clean


def golden_cases() -> list[Path]:
    return sorted(p for p in PARSER.iterdir() if p.suffix in (".js", ".mjs", ".cjs"))


@pytest.mark.parametrize("path", golden_cases(), ids=lambda p: p.name)
def test_golden(path: Path) -> None:
    nb = parse(path.read_bytes(), filename=path.name)
    got = json.dumps(to_json(nb, path.name), indent=2, ensure_ascii=False) + "\n"
    golden = GOLDEN / (path.name + ".cells.json")
    if os.environ.get("TONIC_UPDATE_GOLDEN") or not golden.exists():
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", golden_cases(), ids=lambda p: p.name)
def test_golden_fixtures_are_valid_node(path: Path) -> None:
    """The parser fixtures are real modules: node accepts their syntax."""
    import subprocess

    proc = subprocess.run(["node", "--check", str(path)], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert node  # the helper module is importable alongside


@pytest.mark.parametrize(
    ("source", "warnings"),
    [
        ("const x = 1\n// %%\n+ 2\n", ["line 2: this `// %%` is inside a statement (lines 1-3)"]),
        (
            "// %% a\nfoo(1,\n// %% b\n  2)\n\n// %% c\nbar()\n",
            ["line 3: this `// %%` is inside a statement (lines 2-4)"],
        ),
        ("function f() {\n// %%\n}\n", ["line 2: this `// %%` is inside a statement (lines 1-3)"]),
        # not markers: indented, in a template literal, in a block comment, between statements
        ("f(\n  // %%\n)\nconst t = `\n// %%\n`\n/*\n// %%\n*/\n// %%\nx\n", []),
    ],
)
def test_marker_inside_a_statement_is_a_warning(source: str, warnings: list[str]) -> None:
    """A `// %%` line that falls inside a statement would silently merge two cells."""
    nb = parse(source.encode(), filename="nb.js")
    assert [w.partition(", so")[0] for w in nb.warnings] == warnings
    assert all(w.endswith("so it starts no cell") for w in nb.warnings)


@pytest.mark.parametrize(
    "name", ["analysis.js", "strict.js", "errors.js", "esm_analysis.mjs", "esm_await.mjs"]
)
def test_cells_kept_from_an_earlier_parse_are_the_cells_made_anew(name: str) -> None:
    """An edit leaves most cells where they were, and parse takes those from the one
    before; every notebook of a random edit sequence equals one parsed from nothing."""
    import random

    from tests.timetravel.edits import random_edit
    from tonic.notebook import cells

    rng = random.Random(f"cells-kept-{name}")
    text = (FIXTURES / "timetravel" / name).read_text()
    for _ in range(40):
        _, text = random_edit(rng, text, module=name.endswith(".mjs"))
        kept = parse(text.encode(), filename=name)
        cells._MADE.clear()
        assert kept == parse(text.encode(), filename=name)
