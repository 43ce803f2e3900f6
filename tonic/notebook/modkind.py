"""Decides CommonJS or ES module the way node does: extension, package.json "type", syntax.

node treats `.mjs` (and `.mts`) as ESM and `.cjs` (and `.cts`) as CommonJS. Any other
file (`.js`, `.ts`) follows the nearest package.json: "module" or "commonjs" decide.
With no "type" (or no package.json) node detects: a file that only parses as a module
(import/export statements, `import.meta`, top-level `await`, or a top-level
`let`/`const`/`class` named like a CommonJS wrapper variable) runs as ESM; TypeScript's
`import type` and exported types are stripped before node looks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tree_sitter import Node

from tonic.notebook.declarations import TYPE_ONLY
from tonic.notebook.syntax import FUNCTION_SCOPES
from tonic.settings import nearest_package

# What node decides by the extension alone; any other file (.js, .ts) as described above.
EXTENSION_KINDS = {".mjs": "esm", ".cjs": "cjs", ".mts": "esm", ".cts": "cjs"}
CJS_WRAPPER_NAMES = frozenset({"require", "module", "exports", "__filename", "__dirname"})


@dataclass(frozen=True)
class ModuleKind:
    kind: str  # cjs | esm
    reason: str

    @property
    def esm(self) -> bool:
        return self.kind == "esm"


def package_type(path: Path) -> tuple[str | None, Path | None]:
    """The "type" field of the package.json that governs `path`, and that file."""
    candidate = nearest_package(path)
    if candidate is None:
        return None, None
    try:
        value = json.loads(candidate.read_text(encoding="utf-8")).get("type")
    except (OSError, ValueError, AttributeError):
        return None, candidate
    return (value if isinstance(value, str) else None), candidate


def _esm_syntax(root: Node) -> str | None:
    """Why node's detection would call this program an ES module, or None."""
    for child in root.named_children:
        if child.type in ("import_statement", "export_statement") and not _type_only(child):
            return f"{child.type.split('_')[0]} statement on line {child.start_point[0] + 1}"
        if child.type in ("lexical_declaration", "class_declaration"):
            for node in _iter(child, into_scopes=False):
                if (
                    node.type == "identifier"
                    and node.parent is not None
                    and node.parent.type in ("variable_declarator", "class_declaration")
                    and node.parent.child_by_field_name("name") == node
                    and node.text is not None
                    and node.text.decode() in CJS_WRAPPER_NAMES
                ):
                    return f"top-level declaration of {node.text.decode()}"
    # One walk for both (the first import.meta anywhere; else the first await outside
    # functions), in _iter's order.
    top_await: Node | None = None
    stack = [(root, False)]
    while stack:
        node, inner = stack.pop()
        kind = node.type
        if kind == "meta_property" and node.text == b"import.meta":
            return f"import.meta on line {node.start_point[0] + 1}"
        if (
            top_await is None
            and not inner
            and (
                kind == "await_expression"
                or (kind == "for_in_statement" and any(c.type == "await" for c in node.children))
            )
        ):
            top_await = node
        inside = inner or (node is not root and kind in FUNCTION_SCOPES)
        stack.extend((child, inside) for child in node.children)
    if top_await is not None:
        return f"top-level await on line {top_await.start_point[0] + 1}"
    return None


def _type_only(stmt: Node) -> bool:
    """`import type ...`, `export type {...}`, or an exported type or `declare`: TypeScript
    node strips whole, so it makes no ES module."""
    if any(c.type == "type" for c in stmt.children):
        return True
    decl = stmt.child_by_field_name("declaration")
    return decl is not None and decl.type in TYPE_ONLY


def _iter(node: Node, *, into_scopes: bool) -> list[Node]:
    out: list[Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        if not into_scopes and current is not node and current.type in FUNCTION_SCOPES:
            continue
        stack.extend(current.children)
    return out


def detect_syntax(root: Node, *, filename: str, package_type: str | None) -> ModuleKind:
    for suffix, kind in EXTENSION_KINDS.items():
        if filename.endswith(suffix):
            return ModuleKind(kind, f"{suffix} extension")
    if package_type == "module":
        return ModuleKind("esm", 'package.json "type": "module"')
    if package_type == "commonjs":
        return ModuleKind("cjs", 'package.json "type": "commonjs"')
    why = _esm_syntax(root)
    if why is not None:
        return ModuleKind("esm", f"detected: {why}")
    return ModuleKind("cjs", "no ES module syntax, node's default")
