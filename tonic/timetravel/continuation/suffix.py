"""The source a pause site evaluates to continue a paused process with an edited file.

`suffix_source` builds it: the new file after cell k, instrumented as a full run would
be, wrapped in a labelled block so that a top-level `return` and the pause sites inside
it can leave the eval (`break`) (an ES module's: in an async generator), and
padded so that every character keeps its line and column (stack traces and node's error
report point into the file).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tree_sitter import Node

from tonic.notebook.cells import Notebook
from tonic.notebook.declarations import FUNCTION_DECLARATIONS
from tonic.notebook.instrument import (
    LINE_TERMINATOR_RE,
    STATEMENT_START_RE,
    instrument,
    pause_site,
    utf16_length,
)
from tonic.notebook.syntax import SCOPE_NODES, parse_tree, text, walk
from tonic.timetravel.continuation.versions import hoisted

SITE_RE = re.compile(rb"if\(__tonic__\.p\((\d+)\)\)")
# An ES module's rest runs in an async generator function (its top-level `await`s; a
# generator, so that the kernel can ask V8 where it waits: its [[GeneratorLocation]]),
# kept as __tonic__.g; the eval's value is its first step, the promise the site awaits.
ASYNC_OPEN = "(__tonic__.g=(async function*(){"
ASYNC_CLOSE = "})()).next()"
META = b"__tonic__.m"  # as long as `import.meta`: no column moves


def label(k: int) -> str:
    return f"__tonic_suffix_{k}__"


def _name(node: Node) -> str | None:
    name = node.child_by_field_name("name")
    return None if name is None else text(name)


def _blank(data: bytes) -> bytes:
    """Spaces for every character but line terminators, each as wide as it was."""
    return "".join(
        c if c in "\r\n\u2028\u2029" else " " * utf16_length(c) for c in data.decode("utf-8")
    ).encode()


def _site(node: Node, esm: bool) -> int | None:
    """The cell index of a pause site `instrument` inserted (without its leading `;`; a
    comment after it on its line may be part of the node: TypeScript's grammar)."""
    m = SITE_RE.match(node.text or b"") if node.type == "if_statement" else None
    if m is None:
        return None
    site = pause_site(int(m.group(1)), esm=esm)
    if not (b";" + (node.text or b"")).startswith(site):
        return None
    return int(m.group(1))


def _top_returns(node: Node) -> Iterator[Node]:
    """`return` statements of the module body under `node` (not inside a function)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "return_statement":
            yield current
            continue
        if current.type in SCOPE_NODES:
            continue
        stack.extend(current.children)


def _return_edits(ret: Node, brk: bytes) -> list[tuple[int, int, bytes]]:
    """`return x;` -> `{      x;break L};` and `return;` -> `{break L};`: the argument
    keeps its place, and `void` keeps `{...}` or `function` an expression."""
    keyword = ret.children[0]
    argument = next((c for c in ret.named_children if c.type != "comment"), None)
    if argument is None:
        return [(keyword.start_byte, keyword.end_byte, b"{" + brk + b"}")]
    opener = b"{void " if STATEMENT_START_RE.match(text(argument)) else b"{     "
    return [
        (keyword.start_byte, keyword.end_byte, opener),
        (argument.end_byte, argument.end_byte, b";" + brk + b"}"),
    ]


def suffix_source(
    new: Notebook, k: int, *, file: str, values: bool, keep: frozenset[str] = frozenset()
) -> str:
    """The source pause k evaluates to run `new` from cell k+1 on.

    It is `instrument(new, values=values)` after pause site k, where pause sites and
    top-level `return`s leave the labelled block around it instead of the module
    function (a `return` inside eval is a SyntaxError), the functions in `keep` are
    blanked, and padding puts each character at its line and column in the file; the
    `sourceURL` names the file in stack traces. An ES module's rest is an async generator
    function's body, run at once (its first step, a promise, is what the pause site
    awaits), its imports blanked and `import.meta` the one the site hands over.
    """
    esm = new.kind.esm
    name = label(k).encode()
    brk = b"break " + name
    source = instrument(new, values=values).source
    root = parse_tree(source, new.typescript).root_node
    sites = {j: node for node in root.children if (j := _site(node, esm)) is not None}
    if k not in sites:
        raise ValueError(f"cell {k} is not a code cell of the new file")
    site = sites[k]
    cut = site.start_byte + len(pause_site(k, esm=esm)) - 1
    edits: list[tuple[int, int, bytes]] = []
    for node in root.children:
        if node.start_byte < cut:
            continue
        if node.type in FUNCTION_DECLARATIONS and _name(node) in keep:
            blank = _blank(source[node.start_byte : node.end_byte])
            edits.append((node.start_byte, node.end_byte, blank))
        elif esm:
            edits.extend(_module_edits(node, source))
        elif _site(node, esm) is not None:
            edits.extend((r.start_byte, r.end_byte, brk) for r in _top_returns(node))
        else:
            for ret in _top_returns(node):
                edits.extend(_return_edits(ret, brk))
    out = bytearray()
    pos = cut
    for start, end, replacement in sorted(edits):
        out += source[pos:start] + replacement
        pos = end
    out += source[pos:]
    # Padding: the first character after the site stood where the site was inserted.
    before = source[: site.start_byte - 1].decode("utf-8")  # up to the site's `;`
    terminators = LINE_TERMINATOR_RE.findall(before)
    column = utf16_length(LINE_TERMINATOR_RE.split(before)[-1])
    header, footer = (ASYNC_OPEN, ASYNC_CLOSE) if esm else (label(k) + ":{", "}")
    if terminators:
        padding = header + "".join(terminators) + " " * column
    else:
        padding = header + " " * max(0, column - len(header))
    return f"{padding}{out.decode('utf-8')}\n{footer}\n//# sourceURL={file}"


def _module_edits(node: Node, source: bytes) -> Iterator[tuple[int, int, bytes]]:
    """An ES module's statement in an eval'd rest: imports (node linked them before the
    first cell, and the check made sure they are the old ones) become blanks, and
    `import.meta` (no script may name it) the one the pause site handed over."""
    if hoisted(node):
        yield node.start_byte, node.end_byte, _blank(source[node.start_byte : node.end_byte])
        return
    for n in walk(node):
        if n.type == "meta_property" and text(n) == "import.meta":
            yield n.start_byte, n.end_byte, META
