"""The bindings a top-level statement adds to module scope: one walker of declarations.

Each is a `Binding`: the name's identifier node, its kind (function, var, let, const,
class or import) and, for a function or a class, the node declaring it. It covers
function and generator declarations (async too), classes (TypeScript's abstract ones
too; its types and `declare` statements bind nothing node runs), `let`/`const`/`var` with
destructuring patterns, import clauses and `export` of any of them; a `var` anywhere
outside functions and classes (in blocks, loops, `for (var x in/of ...)`, `try`,
`switch`, labels) is module scope too.

Two options, both taken by the continuation check (timetravel/continuation/versions.py)
and neither by cells.py:
- `block_functions`: a function declared in a block (or an `if`, or under a label) also
  counts, as a `var` (its `block`): sloppy code hoists it to module scope (Annex B),
  where it is `undefined` until the block runs. In strict code it binds nothing outside
  its block: the caller decides, knowing the mode.
- `import_identifiers`: every identifier of an import statement counts, also the
  exported name `a` of `import {a as b}` (which binds only `b`).

The analysis is syntactic and over-approximates on purpose (cells.py's docstring).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node

from tonic.notebook.syntax import pattern_names, text, walk

FUNCTION_DECLARATIONS = frozenset({"function_declaration", "generator_function_declaration"})
CLASS_DECLARATIONS = frozenset({"class_declaration", "abstract_class_declaration"})
# TypeScript statements node strips whole: `declare ...`, interfaces, type aliases.
TYPE_ONLY = frozenset({"ambient_declaration", "interface_declaration", "type_alias_declaration"})


@dataclass(frozen=True)
class Binding:
    """One name a top-level statement binds in module scope."""

    name: Node  # the identifier
    kind: str  # function | var | let | const | class | import
    declaration: Node | None = None  # a function's or a class's declaration

    @property
    def block(self) -> bool:
        """A function declared in a block (only with `block_functions`): a sloppy `var`."""
        return self.kind == "var" and self.declaration is not None


def declared(
    stmt: Node, *, block_functions: bool = False, import_identifiers: bool = False
) -> Iterator[Binding]:
    """Every binding the top-level statement `stmt` adds to module scope, in source order."""
    t = stmt.type
    if t == "export_statement":
        decl = stmt.child_by_field_name("declaration")
        if decl is not None:
            yield from declared(
                decl, block_functions=block_functions, import_identifiers=import_identifiers
            )
        return
    if t in FUNCTION_DECLARATIONS or t in CLASS_DECLARATIONS:
        name = stmt.child_by_field_name("name")
        if name is not None:
            yield Binding(name, "class" if t in CLASS_DECLARATIONS else "function", stmt)
        return
    if t in TYPE_ONLY:
        return
    if t == "lexical_declaration":
        kind_node = stmt.child_by_field_name("kind")
        kind = text(kind_node) if kind_node is not None else "let"
        for d in stmt.named_children:
            if d.type == "variable_declarator":
                for n in pattern_names(d.child_by_field_name("name")):
                    yield Binding(n, kind)
        return
    if t == "import_statement":
        if import_identifiers:
            yield from (Binding(n, "import") for n in walk(stmt) if n.type == "identifier")
        else:
            yield from (Binding(n, "import") for n in _imported(stmt))
        return
    yield from _vars(stmt, block_functions=block_functions)


def _imported(stmt: Node) -> Iterator[Node]:
    """The names an import statement binds: default, namespace, named (or their alias)."""
    for clause in stmt.named_children:
        if clause.type != "import_clause":
            continue
        for part in clause.named_children:
            if part.type == "identifier":
                yield part
            elif part.type == "namespace_import":
                yield from (n for n in part.named_children if n.type == "identifier")
            elif part.type == "named_imports":
                for spec in part.named_children:
                    if spec.type == "import_specifier":
                        name = spec.child_by_field_name("alias") or spec.child_by_field_name("name")
                        if name is not None:
                            yield name


def _vars(stmt: Node, *, block_functions: bool) -> Iterator[Binding]:
    """`var`s anywhere in `stmt` outside functions and classes (and, with
    `block_functions`, functions declared in its blocks)."""
    for node in walk(stmt, into_functions=False):
        if node.type == "variable_declaration":
            for d in node.named_children:
                if d.type == "variable_declarator":
                    for n in pattern_names(d.child_by_field_name("name")):
                        yield Binding(n, "var")
        elif node.type == "for_in_statement":
            loop_kind = node.child_by_field_name("kind")
            if loop_kind is not None and text(loop_kind) == "var":
                for n in pattern_names(node.child_by_field_name("left")):
                    yield Binding(n, "var")
        elif block_functions and node.type in FUNCTION_DECLARATIONS and node is not stmt:
            name = node.child_by_field_name("name")
            if name is not None:
                yield Binding(name, "var", node)
