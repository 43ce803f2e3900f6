"""The names a sloppy suffix calls that nothing in the file declares: where the eval of a
continuation would differ from node should one of them not exist when it is called.

In sloppy eval code V8 looks free names up dynamically. A ReferenceError for a name that
does not exist points at the name itself when the name is called (`f(x)`, `(f)(x)`,
`f?.(x)`, a tag: f`x`), where node's natively compiled module points at the expression
before it (the outer call in `console.log(1, f(x))`, the statement in `x = 1 + f(2)`); a
name read in any other place (`console.log(totl)`, `consle.log(1)`, `new Totl()`) is
reported at the same place by both, so that typo continues. The kernel checks the called
names against the global object at the pause: when one is missing, the continuation
could throw that error, and tonic runs afresh instead. Over-approximating what is
declared (every binding anywhere in the file counts, whatever its scope) keeps the list
short; a name it hides would need the same name declared in another scope and called
undeclared.
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
        "abstract_class_declaration",
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
    """The names the suffix calls (calls, optional calls, tags) that no binding of the
    file declares."""
    declared = declared_anywhere(whole) | WRAPPER
    called: set[str] = set()
    for root in suffix:
        for n in walk(root):
            if n.type != "call_expression":
                continue
            callee = n.child_by_field_name("function")
            while callee is not None and callee.type == "parenthesized_expression":
                callee = callee.named_children[0] if callee.named_child_count == 1 else None
            if callee is not None and callee.type == "identifier" and text(callee) not in declared:
                called.add(text(callee))
    return sorted(called)
