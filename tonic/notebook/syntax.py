"""Loads the tree-sitter grammars once (JavaScript; TypeScript for `.ts`, `.mts` and `.cts`
files, which node 22.18 and later run by stripping their types) and parses bytes into a tree."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache, lru_cache

import tree_sitter_javascript
from tree_sitter import Language, Node, Parser, Tree

# Nodes that open a function scope (a `var` inside one is not a top-level binding).
FUNCTION_SCOPES = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "function",
        "generator_function",
        "arrow_function",
        "method_definition",
        "class_body",
    }
)


TYPESCRIPT_SUFFIXES = (".ts", ".mts", ".cts")


def is_typescript(filename: str) -> bool:
    """A file node takes for TypeScript (by its extension alone, as node does)."""
    return filename.endswith(TYPESCRIPT_SUFFIXES)


@cache
def language(typescript: bool = False) -> Language:
    if typescript:
        import tree_sitter_typescript  # (15 ms: loaded for a TypeScript file only)

        return Language(tree_sitter_typescript.language_typescript())
    return Language(tree_sitter_javascript.language())


def warm() -> None:
    """Load both grammars (the warm server does, before it forks its workers)."""
    language(False)
    language(True)


@cache
def _parser(typescript: bool) -> Parser:
    return Parser(language(typescript))


@lru_cache(maxsize=4)
def parse_tree(data: bytes, typescript: bool = False) -> Tree:
    """The syntax tree of `data` (the last few kept: the notebook's parse, the check of a
    continuation and the suffix's build walk the same versions; no one edits a tree)."""
    return _parser(typescript).parse(data)


def text(node: Node) -> str:
    raw = node.text
    return raw.decode("utf-8", "replace") if raw is not None else ""


_SIMPLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "0": "\0",
}


def _unescape(escape: str) -> str:
    body = escape[1:]
    if body in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[body]
    if body.startswith("x") and len(body) == 3:
        return chr(int(body[1:], 16))
    if body.startswith("u{"):
        return chr(int(body[2:-1], 16))
    if body.startswith("u") and len(body) == 5:
        return chr(int(body[1:], 16))
    if body.startswith(("\n", "\r")):  # line continuation
        return ""
    return body


def string_value(node: Node) -> str | None:
    """The value of a string literal, or a template literal without substitutions."""
    if node.type not in ("string", "template_string"):
        return None
    parts: list[str] = []
    for child in node.named_children:
        if child.type == "string_fragment":
            parts.append(text(child))
        elif child.type == "escape_sequence":
            parts.append(_unescape(text(child)))
        else:  # a ${substitution}: not static
            return None
    return "".join(parts)


# Nodes whose insides are not module-scope code (functions, and classes' bodies).
SCOPE_NODES = FUNCTION_SCOPES | {"class_declaration", "abstract_class_declaration", "class"}


def walk(node: Node, *, into_functions: bool = True) -> Iterator[Node]:
    """`node` and its descendants in source order (optionally not entering functions).
    A tree cursor: a node's children are not made into a list at each step."""
    cursor = node.walk()  # (it cannot leave `node`: no sibling or parent of it)
    depth = 0
    while True:
        current = cursor.node
        assert current is not None
        yield current
        enter = into_functions or depth == 0 or current.type not in SCOPE_NODES
        if enter and cursor.goto_first_child():
            depth += 1
            continue
        while not cursor.goto_next_sibling():
            depth -= 1
            if depth < 0 or not cursor.goto_parent() or depth == 0:
                return


def pattern_names(node: Node | None) -> Iterator[Node]:
    """The identifiers a binding pattern declares."""
    if node is None:
        return
    if node.type in ("identifier", "shorthand_property_identifier_pattern"):
        yield node
    elif node.type in ("object_pattern", "array_pattern", "rest_pattern"):
        for child in node.named_children:
            yield from pattern_names(child)
    elif node.type == "pair_pattern":
        yield from pattern_names(node.child_by_field_name("value"))
    elif node.type in ("assignment_pattern", "object_assignment_pattern"):
        yield from pattern_names(node.child_by_field_name("left"))
    elif node.type in ("required_parameter", "optional_parameter"):  # TypeScript's
        yield from pattern_names(node.child_by_field_name("pattern"))
