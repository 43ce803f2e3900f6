"""What the continuation check reads of one file version: its top-level statements on
either side of cell k, the module-scope bindings they declare, the names they refer to,
a direct eval, and whether the version is strict code."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from tree_sitter import Node

from tonic.notebook.cells import NOT_STATEMENTS, Notebook
from tonic.notebook.declarations import Binding, declared
from tonic.notebook.syntax import parse_tree, text, walk

REFERENCE_NODES = frozenset(
    {"identifier", "shorthand_property_identifier", "shorthand_property_identifier_pattern"}
)


@dataclass(frozen=True)
class Decl:
    """One top-level binding: its kind, the cell declaring it, and, for a hoisted
    function, its text and position (a kept function keeps its old compiled code)."""

    kind: str  # function | var | let | const | class | import
    cell: int
    text: str | None = None
    at: tuple[int, int] | None = None  # (row, column) of a function declaration
    block: bool = False  # a function declared in a block: a `var` only in sloppy code


# Module-scope bindings by name.
Decls = dict[str, list[Decl]]


@dataclass(frozen=True)
class Part:
    """Top-level statements of one file version, from a byte offset on."""

    nb: Notebook
    nodes: tuple[Node, ...]

    def cell_of(self, node: Node) -> int:
        for cell in self.nb.cells:
            if cell.span.start_byte <= node.start_byte < cell.span.end_byte:
                return cell.index
        return 0


def statements(nb: Notebook) -> list[Node]:
    return _statements(nb.data, nb.typescript)


def _statements(data: bytes, typescript: bool) -> list[Node]:
    root = parse_tree(data, typescript).root_node
    return [n for n in root.children if n.type not in NOT_STATEMENTS]


def code_end(nb: Notebook, k: int) -> int | None:
    """End byte of cell k, when it is a code cell (so a pause follows it)."""
    for cell in nb.code_cells:
        if cell.index == k:
            return cell.span.end_byte
    return None


def hoisted(node: Node) -> bool:
    """An ES module's import (or `export ... from`): node links it before any cell runs."""
    return node.type == "import_statement" or (
        node.type == "export_statement" and node.child_by_field_name("source") is not None
    )


def split(nb: Notebook, end: int) -> tuple[Part, Part]:
    """The statements before `end` and from it on; an ES module's imports count before
    (they are bound before the first cell runs)."""
    esm = nb.kind.esm
    nodes = statements(nb)
    before = [n.start_byte < end or (esm and hoisted(n)) for n in nodes]
    return (
        Part(nb, tuple(n for n, b in zip(nodes, before, strict=True) if b)),
        Part(nb, tuple(n for n, b in zip(nodes, before, strict=True) if not b)),
    )


def imports(nb: Notebook) -> tuple[str, ...]:
    """The texts of an ES module's imports, in order."""
    return tuple(text(n) for n in statements(nb) if hoisted(n))


def shared_end(version: Notebook, new: Notebook, k: int) -> int:
    """End of the last cell (at most k) that `version` and `new` have byte for byte."""
    same = next(
        (i for i, (a, b) in enumerate(zip(version.data, new.data, strict=False)) if a != b),
        min(len(version.data), len(new.data)),
    )
    ends = {c.index: c.span.end_byte for c in version.cells}
    shared = 0
    for cell in new.code_cells:
        end = cell.span.end_byte
        if cell.index <= k and end <= same and ends.get(cell.index) == end:
            shared = end
    return shared


def bindings(stmt: Node) -> Iterator[Binding]:
    """The bindings `stmt` adds to the module scope, with sloppy block-level function
    declarations (Annex B) as `var`s: they give the wrapper a binding, which is
    `undefined` until the block runs (in strict code `declarations` drops them)."""
    return declared(stmt, block_functions=True, import_identifiers=True)


def declarations(part: Part, *, strict: bool) -> Decls:
    """Module-scope bindings of `part` by name (in strict code a function declared in a
    block binds nothing outside it)."""
    out: Decls = {}
    for stmt in part.nodes:
        for binding in bindings(stmt):
            if binding.block and strict:
                continue
            decl = Decl(binding.kind, part.cell_of(stmt), block=binding.block)
            node = binding.declaration
            if binding.kind == "function" and node is not None:
                at = (node.start_point[0], node.start_point[1])
                decl = Decl(binding.kind, decl.cell, text(node), at)
            out.setdefault(text(binding.name), []).append(decl)
    return out


def references(nodes: Sequence[Node], exclude: frozenset[int] = frozenset()) -> set[str]:
    """Every identifier token under `nodes` but the declaration names in `exclude`."""
    return {
        text(n)
        for root in nodes
        for n in walk(root)
        if n.type in REFERENCE_NODES and n.id not in exclude
    }


def direct_eval(nodes: Sequence[Node]) -> Node | None:
    """A direct `eval(...)` call or a `with` statement: both let code see any binding."""
    for root in nodes:
        for n in walk(root):
            if n.type == "with_statement":
                return n
            if n.type == "call_expression":
                fn = n.child_by_field_name("function")
                while fn is not None and fn.type == "parenthesized_expression":
                    fn = fn.named_children[0] if fn.named_children else None
                if fn is not None and fn.type == "identifier" and text(fn) == "eval":
                    return n
    return None


# Where the name `eval` is assigned, or bound (as any child: over-approximated, safe).
ASSIGNMENTS = frozenset(
    {"assignment_expression", "augmented_assignment_expression", "update_expression"}
)
BINDERS = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "class_declaration",
        "abstract_class_declaration",
        "import_specifier",
        "namespace_import",
        "import_clause",
        "object_pattern",
        "array_pattern",
        "pair_pattern",
    }
)


def _rebinds(n: Node) -> bool:
    """`n` (named eval) is bound or assigned: a declaration's name, an assignment's
    target (`eval = f`, `globalThis.eval = f`), a pattern's element."""
    if n.type == "property_identifier":  # globalThis.eval = f
        n = n.parent or n
    parent = n.parent
    if parent is None:
        return False
    if parent.type in ASSIGNMENTS:
        return parent.child_by_field_name("left") == n or parent.type == "update_expression"
    if parent.type == "variable_declarator":
        return parent.child_by_field_name("name") == n
    return parent.type in BINDERS or n.type == "shorthand_property_identifier_pattern"


def unfit_names(nodes: Sequence[Node]) -> Node | None:
    """What the eval of a continuation cannot make node's: the name `eval` bound or
    assigned (the pause sites call eval by that name), or `delete NAME` (a var the eval
    declares can be deleted; node's module-level vars cannot)."""
    for root in nodes:
        for n in walk(root):
            if n.type == "unary_expression" and text(n).startswith("delete"):
                arg = n.child_by_field_name("argument")
                while arg is not None and arg.type == "parenthesized_expression":
                    arg = arg.named_children[0] if arg.named_children else None
                if arg is not None and arg.type == "identifier":
                    return n
            if n.end_byte - n.start_byte == 4 and text(n) == "eval" and _rebinds(n):
                return n
    return None


@lru_cache(maxsize=8)
def unfit_in(data: bytes, typescript: bool) -> Node | None:
    """unfit_names of a whole file version (the versions of a snapshot's lineage are
    judged again at every edit)."""
    return unfit_names(_statements(data, typescript))


def is_strict(nb: Notebook) -> bool:
    """A 'use strict' directive in the prologue makes every cell strict (ESM always is)."""
    if nb.kind.esm:
        return True
    for stmt in statements(nb):
        if stmt.type != "expression_statement" or not stmt.named_children:
            return False
        expr = stmt.named_children[0]
        if expr.type != "string":
            return False
        if text(expr)[1:-1] == "use strict":
            return True
    return False
