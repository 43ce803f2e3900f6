"""The names a sloppy suffix reads that nothing in the file declares: where the eval of a
continuation would differ from node should one of them not exist when it is read.

In sloppy eval code V8 looks free names up dynamically, and a ReferenceError for a name
that does not exist points at the name itself, where node's natively compiled module
points at the enclosing expression (an outer call, for example). The kernel checks these
names against the global object at the pause: when one is missing, the continuation could
throw that error, and tonic runs afresh instead. Over-approximating what is declared
(every binding anywhere in the file counts, whatever its scope) keeps the list short; a
name it hides would need the same name declared in another scope and read undeclared.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tree_sitter import Node

from tonic.notebook.syntax import pattern_names, text, walk

NAMED = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "generator_function",
        "class_declaration",
        "class",
        "import_specifier",
        "namespace_import",
    }
)
# What the module function binds (exports, require, ...), and what every function has.
WRAPPER = frozenset({"exports", "require", "module", "__filename", "__dirname", "arguments"})


def _bound(node: Node) -> Iterator[Node]:
    """The identifiers `node` declares, when it is a binding construct."""
    kind = node.type
    if kind == "variable_declarator":
        yield from pattern_names(node.child_by_field_name("name"))
    elif kind == "formal_parameters":
        for param in node.named_children:
            yield from pattern_names(param)
    elif kind in ("arrow_function", "catch_clause"):
        yield from pattern_names(node.child_by_field_name("parameter"))
    elif kind in ("for_in_statement", "for_of_statement"):
        yield from pattern_names(node.child_by_field_name("left"))
    elif kind in NAMED:
        for field in ("name", "alias"):
            name = node.child_by_field_name(field)
            if name is not None and name.type == "identifier":
                yield name
    elif kind == "import_clause":
        yield from (c for c in node.named_children if c.type == "identifier")


def declared_anywhere(roots: Sequence[Node]) -> set[str]:
    return {text(name) for root in roots for n in walk(root) for name in _bound(n)}


def free_reads(suffix: Sequence[Node], whole: Sequence[Node]) -> list[str]:
    """The names the suffix reads (not under `typeof`) that no binding of the file declares."""
    declared = declared_anywhere(whole) | WRAPPER
    reads: set[str] = set()
    for root in suffix:
        for n in walk(root):
            if n.type not in ("identifier", "shorthand_property_identifier"):
                continue
            parent = n.parent
            typeof = parent is not None and parent.type == "unary_expression"
            if typeof and parent is not None and text(parent).startswith("typeof"):
                continue
            name = text(n)
            if name not in declared:
                reads.add(name)
    return sorted(reads)
