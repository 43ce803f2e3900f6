"""Continuing a paused process with an edited file: the check, and the source to eval.

A snapshot holds a node process that compiled an OLD version of the file and is blocked
at pause k (after cell k). If the NEW file has the same bytes up to the end of cell k,
the process can often go on as if it had run NEW from the start: the pause site answers
with the new "suffix" (everything after cell k), which it runs as a direct `eval` inside
the module wrapper (semantics notes §4C). The eval sees the wrapper's scope, `this`,
`arguments`, `require`, `module` and the pending timers of cells 1..k, as node would.

It is not exact when a binding differs between the two worlds (§5 step 4): the wrapper
hoisted the OLD suffix's declarations, and eval can neither initialize a hoisted
`let`/`const`/`class`, nor share its `var`s with the wrapper (strict eval has a var
scope of its own, and so has the arrow function the pause site calls eval in), nor undo
a function that cells 1..k already saw. `check` says when continuing is exact, by
comparing the declarations of the old and new suffix against the names cells 1..k (and
the old functions they can call) refer to. Over-approximating those names is safe: it
only makes tonic fall back to an earlier snapshot, or to a fresh run.

`suffix_source` builds the eval source: the new file after cell k, instrumented as a
full run would be, wrapped in a labelled block so that a top-level `return` and the
pause sites inside it can leave the eval (`break`), and padded so that every character
keeps its line and column (stack traces and node's error report point into the file).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tree_sitter import Node

from tonic.notebook.cells import Notebook
from tonic.notebook.declarations import FUNCTION_DECLARATIONS, Binding, declared
from tonic.notebook.instrument import instrument, pause_site
from tonic.notebook.syntax import SCOPE_NODES, parse_tree, text, walk

LEXICAL = frozenset({"let", "const", "class", "import"})
NOT_STATEMENTS = frozenset({"comment", "hash_bang_line"})
REFERENCE_NODES = frozenset(
    {"identifier", "shorthand_property_identifier", "shorthand_property_identifier_pattern"}
)
SITE_RE = re.compile(rb"if\(__tonic__\.p\((\d+)\)\)")
# Where the first token of a `return` argument would change meaning at a statement start.
STATEMENT_START_RE = re.compile(r"^(?:\{|function\b|class\b|async\s+function\b|let\s*\[)")
# What the module function binds before any cell runs.
WRAPPER_NAMES = frozenset({"exports", "require", "module", "__filename", "__dirname", "arguments"})
LINE_TERMINATOR_RE = re.compile("\r\n|[\n\r\u2028\u2029]")


def label(k: int) -> str:
    return f"__tonic_suffix_{k}__"


@dataclass(frozen=True)
class _Decl:
    """One top-level binding: its kind, the cell declaring it, and, for a hoisted
    function, its text and position (a kept function keeps its old compiled code)."""

    kind: str  # function | var | let | const | class | import
    cell: int
    text: str | None = None
    at: tuple[int, int] | None = None  # (row, column) of a function declaration
    block: bool = False  # a function declared in a block: a `var` only in sloppy code


@dataclass(frozen=True)
class _Part:
    """Top-level statements of one file version, from a byte offset on."""

    nb: Notebook
    nodes: tuple[Node, ...]

    def cell_of(self, node: Node) -> int:
        for cell in self.nb.cells:
            if cell.span.start_byte <= node.start_byte < cell.span.end_byte:
                return cell.index
        return 0


def _statements(nb: Notebook) -> list[Node]:
    root = parse_tree(nb.data).root_node
    return [n for n in root.children if n.type not in NOT_STATEMENTS]


def _code_end(nb: Notebook, k: int) -> int | None:
    """End byte of cell k, when it is a code cell (so a pause follows it)."""
    for cell in nb.code_cells:
        if cell.index == k:
            return cell.span.end_byte
    return None


def _split(nb: Notebook, end: int) -> tuple[_Part, _Part]:
    nodes = _statements(nb)
    return (
        _Part(nb, tuple(n for n in nodes if n.start_byte < end)),
        _Part(nb, tuple(n for n in nodes if n.start_byte >= end)),
    )


def _bindings(stmt: Node) -> Iterator[Binding]:
    """The bindings `stmt` adds to the module scope, with sloppy block-level function
    declarations (Annex B) as `var`s: they give the wrapper a binding, which is
    `undefined` until the block runs (in strict code `_declarations` drops them)."""
    return declared(stmt, block_functions=True, import_identifiers=True)


def _declarations(part: _Part, *, strict: bool) -> dict[str, list[_Decl]]:
    """Module-scope bindings of `part` by name (in strict code a function declared in a
    block binds nothing outside it)."""
    out: dict[str, list[_Decl]] = {}
    for stmt in part.nodes:
        for binding in _bindings(stmt):
            if binding.block and strict:
                continue
            decl = _Decl(binding.kind, part.cell_of(stmt), block=binding.block)
            node = binding.declaration
            if binding.kind == "function" and node is not None:
                at = (node.start_point[0], node.start_point[1])
                decl = _Decl(binding.kind, decl.cell, text(node), at)
            out.setdefault(text(binding.name), []).append(decl)
    return out


def _references(nodes: Sequence[Node], exclude: frozenset[int] = frozenset()) -> set[str]:
    """Every identifier token under `nodes` but the declaration names in `exclude`."""
    return {
        text(n)
        for root in nodes
        for n in walk(root)
        if n.type in REFERENCE_NODES and n.id not in exclude
    }


def _direct_eval(nodes: Sequence[Node]) -> Node | None:
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


def _strict(nb: Notebook) -> bool:
    """A 'use strict' directive in the prologue makes every cell strict (ESM always is)."""
    if nb.kind.esm:
        return True
    for stmt in _statements(nb):
        if stmt.type != "expression_statement" or not stmt.named_children:
            return False
        expr = stmt.named_children[0]
        if expr.type != "string":
            return False
        if text(expr)[1:-1] == "use strict":
            return True
    return False


def _cells(k: int) -> str:
    return "cell 1" if k == 1 else f"cells 1-{k}"


def _refer(k: int) -> str:
    return f"{_cells(k)} {'refers' if k == 1 else 'refer'} to it"


def _shared_end(version: Notebook, new: Notebook, k: int) -> int:
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


def _where(decls: list[_Decl], side: str) -> str:
    return f"{side} cell {decls[0].cell}"


def _kind(decl: _Decl) -> str:
    return "a function in a block" if decl.block else decl.kind


def _functions(decls: list[_Decl]) -> list[tuple[str | None, tuple[int, int] | None]]:
    return [(d.text, d.at) for d in decls if d.kind == "function"]


def _judge(
    name: str,
    old: list[_Decl],
    new: list[_Decl],
    *,
    observed: bool,
    strict: bool,
    prefix: dict[str, list[_Decl]],
    new_refs: set[str],
    new_evals: bool,
    k: int,
) -> str | None:
    """Why `name` breaks a continuation, given its declarations in the old and the new
    suffix, and whether cells 1..k (or old functions they call) refer to it."""
    refer = _refer(k)
    if observed:
        for side, decls in (("old", old), ("new", new)):
            lexical = [d for d in decls if d.kind in LEXICAL]
            if lexical:
                return (
                    f"{_where(lexical, side)} declares `{name}` with {lexical[0].kind}, and "
                    f"{refer}: eval cannot initialize the binding they see (rule b)"
                )
        old_fn, new_fn = _functions(old), _functions(new)
        if old_fn or new_fn:
            if not old_fn or not new_fn:
                side, decls = ("old", old) if old_fn else ("new", new)
                return (
                    f"only the {side} version declares function `{name}` ({side} cell "
                    f"{decls[0].cell}), and {refer} (rule b)"
                )
            if [t for t, _ in old_fn] != [t for t, _ in new_fn]:
                return (
                    f"function `{name}` changed (cell {new[0].cell}), and {refer}: they "
                    "may have called the old one (rule c)"
                )
            if [a for _, a in old_fn] != [a for _, a in new_fn]:
                return (
                    f"function `{name}` moved (cell {new[0].cell}), and {refer}: the kept "
                    "old function would report old line numbers (rule c)"
                )
            return None  # unchanged: kept, not redeclared (keep_functions)
        if new:
            return (
                f"{_where(new, 'new')} declares `{name}` with {_kind(new[0])}, and {refer}: "
                f"the eval'd suffix gets a binding of its own{' (strict code)' * strict} "
                "(rule c)"
            )
        if old and not any(d.kind in ("var", "function") for d in prefix.get(name, [])):
            return (
                f"only the old version declares `{name}` (old cell {old[0].cell}), "
                f"and {refer} (rule b)"
            )
        return None
    if old and not new and name not in prefix and (name in new_refs or new_evals):
        how = "refers to it" if name in new_refs else "calls eval"
        return (
            f"old cell {old[0].cell} declared `{name}`, the edited file does not, and its "
            f"rest {how}: it would find the stale binding (rule d)"
        )
    lexical = [d for d in old if d.kind in LEXICAL]
    hoisted = [d for d in new if d.kind in ("var", "function")]
    if lexical and hoisted:
        return (
            f"old cell {lexical[0].cell} declared `{name}` with {lexical[0].kind}, and cell "
            f"{hoisted[0].cell} declares it with {_kind(hoisted[0])}: an eval in the module "
            "function would throw a redeclaration SyntaxError (rule e)"
        )
    return None


def _redeclared(prefix: dict[str, list[_Decl]], suffix: dict[str, list[_Decl]]) -> str | None:
    """A top-level name the new file declares twice where one is lexical: an early
    SyntaxError, so node runs no cell, while the eval would throw after cells 1..k ran.
    (Other early errors tree-sitter accepts are the caller's: `node --check` first.)"""
    for name, found in sorted(suffix.items()):
        every = [d for d in prefix.get(name, []) + found if not d.block]
        lexical = [d for d in every if d.kind in LEXICAL]
        if lexical and len(every) > 1:
            cells = sorted({d.cell for d in every})
            where = " and ".join(str(c) for c in cells)
            return (
                f"the edited file declares `{name}` twice (cell{'s' * (len(cells) > 1)} "
                f"{where}): a SyntaxError before any cell runs"
            )
    return None


def _block_conflicts(decls: dict[str, list[_Decl]], strict: bool) -> str | None:
    """The suffix runs inside a block, where a function declaration is lexical: it may
    not share its name with a `var`, nor (strict) with another function declaration."""
    for name, found in sorted(decls.items()):
        functions = [d for d in found if d.kind == "function"]
        if not functions:
            continue
        var = [d for d in found if d.kind == "var"]
        if var:
            what = "a function in a block" if var[0].block else "a var"
            return (
                f"cell {functions[0].cell} declares function `{name}` and cell {var[0].cell} "
                f"{what} of that name: inside the eval'd block that means something else"
            )
        if strict and len(functions) > 1:
            return f"strict code declares function `{name}` twice: not allowed in a block"
    return None


def _redeclared_var(
    prefix: dict[str, list[_Decl]], suffix: dict[str, list[_Decl]], observed: frozenset[str]
) -> str | None:
    """A `var` (or function) of the new suffix whose name cells 1..k or the module function
    already bind: node shares that binding, with its value; the eval'd suffix gets a
    binding of its own, `undefined` at first. (Unchanged functions in R are kept, and
    judged by rule c instead.)"""
    for name, found in sorted(suffix.items()):
        hoisted = [d for d in found if d.kind in ("var", "function")]
        if not hoisted or (name not in prefix and name not in WRAPPER_NAMES):
            continue
        if name in observed and all(d.kind == "function" for d in found):
            continue
        where = f"{_cells(max(d.cell for d in prefix[name]))}" if name in prefix else "node"
        return (
            f"cell {hoisted[0].cell} declares `{name}` with {_kind(hoisted[0])}, which "
            f"{where} already bound: the eval'd suffix would get a binding of its own"
        )
    return None


def _annex_b(
    prefix: dict[str, list[_Decl]], old: dict[str, list[_Decl]], new: dict[str, list[_Decl]]
) -> str | None:
    """A sloppy function declared in a block of cells 1..k also binds its name in the
    module, unless a top-level `let`/`const`/`class` anywhere in the file has that name
    (Annex B). The process decided that with the old file; node decides with the new."""
    for name, found in sorted(prefix.items()):
        block = [d for d in found if d.block]
        if not block:
            continue
        before = any(d.kind in LEXICAL for d in old.get(name, []))
        after = any(d.kind in LEXICAL for d in new.get(name, []))
        if before != after:
            which = "old" if before else "new"
            return (
                f"cell {block[0].cell} declares function `{name}` in a block, and only the "
                f"{which} rest of the file declares `{name}` with let/const/class, which "
                "decides whether that function also binds it in the module (Annex B)"
            )
    return None


@dataclass(frozen=True)
class _Analysis:
    """What `check` and `keep_functions` share: cells 1..k, R, and both suffixes."""

    reason: str | None
    observed: frozenset[str] = frozenset()
    olds: tuple[dict[str, list[_Decl]], ...] = ()
    new: dict[str, list[_Decl]] | None = None


def _analyse(lineage: Sequence[Notebook], new: Notebook, k: int) -> _Analysis:
    if not lineage:
        return _Analysis("no file version is known for the running process")
    running = lineage[-1]
    if any(nb.kind.esm for nb in (*lineage, new)):
        return _Analysis("an ES module cannot continue with an edited suffix (eval is no module)")
    if any(nb.kind.kind != new.kind.kind for nb in lineage):
        return _Analysis(f"the module kind changed to {new.kind.kind} ({new.kind.reason})")
    if not new.clean:
        return _Analysis("the edited file has syntax errors")
    if k < 1:
        return _Analysis(f"there is no pause {k}")
    end = _code_end(running, k)
    if end is None:
        return _Analysis(f"the running version has no code cell {k}")
    if _code_end(new, k) != end or running.data[:end] != new.data[:end]:
        return _Analysis(f"{_cells(k)} changed")
    strict = _strict(new)
    if any(_strict(nb) != strict for nb in lineage):
        return _Analysis("the 'use strict' directive changed")
    prefix, suffix = _split(new, end)
    prefix_decls = _declarations(prefix, strict=strict)
    new_decls = _declarations(suffix, strict=strict)
    # Each version's declarations after the cells it shares with the new file were
    # compiled into the process (hoisted by the wrapper, or by an earlier eval's block).
    olds = []
    functions: dict[str, list[Node]] = {}
    for nb in lineage:
        _, part = _split(nb, end if nb is running else _shared_end(nb, new, k))
        olds.append(_declarations(part, strict=strict))
        for stmt in part.nodes:
            if stmt.type in FUNCTION_DECLARATIONS and (n := stmt.child_by_field_name("name")):
                functions.setdefault(text(n), []).append(stmt)
    # R: what cells 1..k refer to, and what the hoisted old functions they name refer to.
    names = frozenset(b.name.id for s in prefix.nodes for b in _bindings(s))
    observed = _references(prefix.nodes, names)
    reached: list[Node] = list(prefix.nodes)
    todo = [n for n in observed if n in functions]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for fn in functions[name]:
            reached.append(fn)
            fresh = _references([fn]) - observed
            observed |= fresh
            todo.extend(n for n in fresh if n in functions)
    dynamic = _direct_eval(reached)
    if dynamic is not None:
        what = "a with statement" if dynamic.type == "with_statement" else "a direct eval"
        return _Analysis(
            f"{_cells(k)} (or old functions they call) use {what} "
            f"on line {dynamic.start_point[0] + 1}: any binding may be observed (rule a)"
        )
    conflict = (
        _redeclared(prefix_decls, new_decls)
        or _block_conflicts(new_decls, strict)
        or _redeclared_var(prefix_decls, new_decls, frozenset(observed))
    )
    if conflict is not None:
        return _Analysis(conflict)
    new_refs = _references(suffix.nodes)
    new_evals = _direct_eval(suffix.nodes) is not None
    for old in olds:
        reason = _annex_b(prefix_decls, old, new_decls)
        if reason is not None:
            return _Analysis(reason)
        for name in sorted(set(old) | set(new_decls)):
            reason = _judge(
                name,
                old.get(name, []),
                new_decls.get(name, []),
                observed=name in observed,
                strict=strict,
                prefix=prefix_decls,
                new_refs=new_refs,
                new_evals=new_evals,
                k=k,
            )
            if reason is not None:
                return _Analysis(reason)
    return _Analysis(None, frozenset(observed), tuple(olds), new_decls)


def check(lineage: Sequence[Notebook], new: Notebook, k: int) -> str | None:
    """None when the process paused after cell k may go on with `new`'s suffix and
    behave exactly as `node NEW`; otherwise why not (rule and identifier).

    `lineage` lists every file version compiled into the process, oldest first; the
    last one is the version it is paused in, whose bytes up to the end of cell k `new`
    shares. Earlier versions are assumed to have been continued after passing this check.
    """
    return _analyse(lineage, new, k).reason


def keep_functions(lineage: Sequence[Notebook], new: Notebook, k: int) -> frozenset[str]:
    """Function declarations of the new suffix that cells 1..k may already hold: the
    suffix must not redeclare them, so that they stay the very objects cells 1..k saw
    (and compiled once, as node does). `check` has made sure they are unchanged."""
    analysis = _analyse(lineage, new, k)
    if analysis.reason is not None or analysis.new is None:
        return frozenset()
    return frozenset(
        name
        for name, decls in analysis.new.items()
        if name in analysis.observed
        and any(d.kind == "function" for d in decls)
        and all(any(d.kind == "function" for d in old.get(name, [])) for old in analysis.olds)
    )


def _name(node: Node) -> str | None:
    name = node.child_by_field_name("name")
    return None if name is None else text(name)


def _utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _blank(data: bytes) -> bytes:
    """Spaces for every character but line terminators, each as wide as it was."""
    return "".join(
        c if c in "\r\n\u2028\u2029" else " " * _utf16(c) for c in data.decode("utf-8")
    ).encode()


def _site(node: Node) -> int | None:
    """The cell index of a pause site `instrument` inserted (without its leading `;`)."""
    m = SITE_RE.match(node.text or b"") if node.type == "if_statement" else None
    if m is None or b";" + (node.text or b"") != pause_site(int(m.group(1)), esm=False):
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
    `sourceURL` names the file in stack traces.
    """
    if new.kind.esm:
        raise ValueError("an ES module cannot continue with an edited suffix")
    name = label(k).encode()
    brk = b"break " + name
    source = instrument(new, values=values).source
    root = parse_tree(source).root_node
    sites = {j: node for node in root.children if (j := _site(node)) is not None}
    if k not in sites:
        raise ValueError(f"cell {k} is not a code cell of the new file")
    site = sites[k]
    cut = site.end_byte
    edits: list[tuple[int, int, bytes]] = []
    for node in root.children:
        if node.end_byte <= cut:
            continue
        if _site(node) is not None:
            edits.extend((r.start_byte, r.end_byte, brk) for r in _top_returns(node))
        elif node.type in FUNCTION_DECLARATIONS and _name(node) in keep:
            blank = _blank(source[node.start_byte : node.end_byte])
            edits.append((node.start_byte, node.end_byte, blank))
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
    column = _utf16(LINE_TERMINATOR_RE.split(before)[-1])
    header = label(k) + ":{"
    if terminators:
        padding = header + "".join(terminators) + " " * column
    else:
        padding = header + " " * max(0, column - len(header))
    return f"{padding}{out.decode('utf-8')}\n}}\n//# sourceURL={file}"
