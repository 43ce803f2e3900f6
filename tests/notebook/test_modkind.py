"""Module kind follows node's rules; checked against node itself on every row."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import node, node_strips_types
from tonic.notebook.loader import load

ROWS = [
    # (file name, package.json "type" or None for no package.json, source, kind)
    ("a.js", None, "console.log(typeof require)\n", "cjs"),
    ("a.js", None, "await 1;\nconsole.log(typeof require)\n", "esm"),
    ("a.js", None, "console.log(typeof require)\n\nimport fs from 'fs';\n", "esm"),
    ("a.js", None, "console.log(typeof require)\n\nexport const x = 1;\n", "esm"),
    ("a.js", None, "console.log(typeof require, typeof import.meta)\n", "esm"),
    ("a.js", None, "const require = 1;\nconsole.log(typeof module)\n", "esm"),
    ("a.js", None, "async function f() { await 1 }\nconsole.log(typeof require)\n", "cjs"),
    ("a.js", None, "import('fs').then(() => console.log(typeof require))\n", "cjs"),
    ("a.js", "", "await 1;\nconsole.log(typeof require)\n", "esm"),
    ("a.js", "module", "console.log(typeof require)\n", "esm"),
    ("a.js", "commonjs", "console.log(typeof require)\n", "cjs"),
    ("a.mjs", "commonjs", "console.log(typeof require)\n", "esm"),
    ("a.cjs", "module", "console.log(typeof require)\n", "cjs"),
    ("a", None, "console.log(typeof require)\n", "cjs"),
]
if node_strips_types():  # TypeScript, where this node runs it
    ROWS += [
        ("a.ts", None, "const n: number = 1;\nconsole.log(typeof require)\n", "cjs"),
        ("a.ts", None, "import type { A } from './none';\nconsole.log(typeof require)\n", "cjs"),
        (
            "a.ts",
            None,
            "export type T = 1;\nexport interface I {}\nconsole.log(typeof require)\n",
            "cjs",
        ),
        ("a.ts", None, "await 1;\nconsole.log(typeof require)\n", "esm"),
        ("a.ts", "module", "console.log(typeof require)\n", "esm"),
        ("a.mts", "commonjs", "console.log(typeof require)\n", "esm"),
        ("a.cts", "module", "const n: number = 1;\nconsole.log(typeof require)\n", "cjs"),
    ]


@pytest.mark.parametrize(("name", "ptype", "source", "kind"), ROWS)
def test_kind_matches_node(
    tmp_path: Path, name: str, ptype: str | None, source: str, kind: str
) -> None:
    if ptype is not None:
        body = "{}" if ptype == "" else f'{{"type": "{ptype}"}}'
        (tmp_path / "package.json").write_text(body)
    path = tmp_path / name
    path.write_text(source)
    _, nb = load(path)
    assert nb.kind.kind == kind
    out = node(path).stdout.decode()
    assert out.startswith("undefined" if kind == "esm" else "function"), out
