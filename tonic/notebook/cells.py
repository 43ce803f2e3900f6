"""Splits a JavaScript module into cells: one function from bytes to a frozen Notebook.

Two formats, as in Jupytext:
- percent: a top-level line comment `// %%` at column 0 starts a cell; text after it is
  the title, and `[markdown]` (or `[md]`) marks a prose cell made of `//` comment lines;
- blank lines: with no markers, a cell is a group of top-level statements with no blank
  line between them; comments above a statement belong to it.

A cell never splits a statement, a comment or a template literal: boundaries are only
taken between the program's top-level children. Analysis (declarations, references,
require/import specifiers) is syntactic and over-approximates on purpose: a later issue
uses it to decide whether a snapshot may be reused, where "too many" is safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from tree_sitter import Node

from tonic.notebook.declarations import declared
from tonic.notebook.modkind import ModuleKind, detect_syntax
from tonic.notebook.syntax import is_typescript, parse_tree, string_value, text, walk

MARKER_RE = re.compile(r"^//\s*%%(?:\s(?P<rest>.*))?$")
CELL_TYPE_RE = re.compile(r"\[(?P<type>[A-Za-z]+)\]")
BLANK_LINE_RE = re.compile(rb"\n[ \t\r\f\v]*\n")
# The names of tonic's pause sites (instrument.py) and continuations (continuation/suffix.py).
KERNEL_NAME_RE = re.compile(rb"__tonic(?:__|_suffix_\d+__)")

NOT_STATEMENTS = frozenset({"comment", "hash_bang_line"})


@dataclass(frozen=True)
class Span:
    """A region of the file: byte offsets, 1-based lines, 1-based columns in characters."""

    start_byte: int
    end_byte: int
    start_line: int
    start_col: int
    end_line: int
    end_col: int

    def to_json(self) -> dict[str, int]:
        return {
            "start_line": self.start_line,
            "start_col": self.start_col,
            "end_line": self.end_line,
            "end_col": self.end_col,
            "start_byte": self.start_byte,
            "end_byte": self.end_byte,
        }


@dataclass(frozen=True)
class Declaration:
    name: str
    kind: str  # function | var | let | const | class | import


@dataclass(frozen=True)
class Dependency:
    specifier: str
    kind: str  # require | import | export-from | dynamic-import
    line: int


@dataclass(frozen=True)
class Cell:
    """One cell, as a value. `code` spans its statements; None for a cell without any."""

    index: int
    type: str  # code | markdown
    title: str | None
    span: Span
    source: str
    code: Span | None
    statements: int
    declarations: tuple[Declaration, ...]
    references: tuple[str, ...]
    dependencies: tuple[Dependency, ...]
    last_expression: Span | None
    prose: str | None = None

    @property
    def runs(self) -> bool:
        return self.statements > 0

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "type": self.type,
            "title": self.title,
            "span": self.span.to_json(),
            "statements": self.statements,
            "declarations": [{"name": d.name, "kind": d.kind} for d in self.declarations],
            "references": list(self.references),
            "dependencies": [
                {"specifier": d.specifier, "kind": d.kind, "line": d.line}
                for d in self.dependencies
            ],
            "last_expression": self.last_expression.to_json() if self.last_expression else None,
            "prose": self.prose,
            "source": self.source,
        }


@dataclass(frozen=True)
class Notebook:
    """A parsed notebook. `comments` and `statements` are byte ranges for instrumentation."""

    data: bytes
    format: str  # percent | blank-lines
    kind: ModuleKind
    cells: tuple[Cell, ...]
    comments: tuple[tuple[int, int], ...]
    statement_ranges: tuple[tuple[int, int], ...]
    parse_errors: tuple[Span, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    typescript: bool = False  # parsed with tree-sitter's TypeScript grammar (syntax.py)

    @property
    def code_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.runs)

    @property
    def unsplit(self) -> str | None:
        """Why the file runs as one piece (no pause site, no snapshot), or None: tree-sitter
        did not parse all of it, or it names `__tonic__`, the pause sites' own name."""
        if self.parse_errors:
            return f"tree-sitter could not parse line {self.parse_errors[0].start_line}"
        if KERNEL_NAME_RE.search(self.data):
            return "it names __tonic__, the name of tonic's pause sites"
        return None

    @property
    def clean(self) -> bool:
        """True when the file can be split into cells (see `unsplit`)."""
        return self.unsplit is None


class _Positions:
    """Byte offset -> (1-based line, 1-based character column)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.line_starts = [0] + [m.end() for m in re.finditer(rb"\n", data)]

    def line_of(self, offset: int) -> int:
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def span(self, start: int, end: int) -> Span:
        sl, el = self.line_of(start), self.line_of(end)
        return Span(start, end, sl, self._col(sl, start), el, self._col(el, end))

    def _col(self, line: int, offset: int) -> int:
        start = self.line_starts[line - 1]
        return len(self.data[start:offset].decode("utf-8", "replace")) + 1


def _dependencies(stmt: Node, positions: _Positions) -> Iterator[Dependency]:
    for node in walk(stmt):
        kind: str | None = None
        spec_node: Node | None = None
        if node.type in ("import_statement", "export_statement"):
            spec_node = node.child_by_field_name("source")
            kind = "import" if node.type == "import_statement" else "export-from"
        elif node.type == "call_expression":
            fn = node.child_by_field_name("function")
            args = node.child_by_field_name("arguments")
            if fn is None or args is None or len(args.named_children) != 1:
                continue
            if fn.type == "identifier" and text(fn) == "require":
                kind = "require"
            elif fn.type == "import":
                kind = "dynamic-import"
            spec_node = args.named_children[0]
        if kind is None or spec_node is None:
            continue
        value = string_value(spec_node)
        if value is not None:
            yield Dependency(value, kind, positions.line_of(node.start_byte))


def _marker(node: Node, positions: _Positions) -> tuple[str | None, str] | None:
    """(title, type) when `node` is a `// %%` cell marker at the start of its line."""
    if node.type != "comment":
        return None
    line_start = positions.line_starts[positions.line_of(node.start_byte) - 1]
    if node.start_byte != line_start:
        return None
    m = MARKER_RE.match(text(node).rstrip())
    if m is None:
        return None
    rest = (m.group("rest") or "").strip()
    cell_type = "code"
    tm = CELL_TYPE_RE.search(rest)
    if tm is not None:
        if tm.group("type").lower() in ("markdown", "md"):
            cell_type = "markdown"
        rest = (rest[: tm.start()] + rest[tm.end() :]).strip()
    return (rest or None), cell_type


def _prose(nodes: list[Node]) -> str:
    lines: list[str] = []
    for node in nodes:
        if node.type != "comment":
            continue
        body = text(node)
        if body.startswith("//"):
            body = body[2:]
            lines.append(body[1:] if body.startswith(" ") else body)
        else:
            lines.extend(body.removeprefix("/*").removesuffix("*/").strip("\n").splitlines())
    return "\n".join(lines).strip("\n")


@dataclass
class _Group:
    nodes: list[Node]
    title: str | None = None
    type: str = "code"
    start: int | None = None  # marker start, when the cell begins with a marker


def _percent_groups(top: list[Node], positions: _Positions) -> list[_Group] | None:
    markers = [(i, m) for i, n in enumerate(top) if (m := _marker(n, positions)) is not None]
    if not markers:
        return None
    groups: list[_Group] = []
    first = markers[0][0]
    if first > 0:
        groups.append(_Group(top[:first]))
    bounds = [i for i, _ in markers] + [len(top)]
    for (i, (title, cell_type)), end in zip(markers, bounds[1:], strict=True):
        groups.append(_Group(top[i + 1 : end], title, cell_type, top[i].start_byte))
    return groups


def _blank_line_groups(top: list[Node], data: bytes) -> list[_Group]:
    raw: list[list[Node]] = []
    for node in top:
        if raw and not BLANK_LINE_RE.search(data[raw[-1][-1].end_byte : node.start_byte]):
            raw[-1].append(node)
        else:
            raw.append([node])
    # Comment-only groups belong to the statements below them (or, at the end, above).
    merged: list[list[Node]] = []
    pending: list[Node] = []
    for nodes in raw:
        if all(n.type in NOT_STATEMENTS for n in nodes):
            pending.extend(nodes)
            continue
        merged.append(pending + nodes)
        pending = []
    if pending:
        if merged:
            merged[-1].extend(pending)
        else:
            merged.append(pending)
    return [_Group(nodes) for nodes in merged]


def parse(
    data: bytes, *, filename: str = "<notebook>", package_type: str | None = None
) -> Notebook:
    """Split `data` (the notebook's bytes) into cells and analyse each one."""
    typescript = is_typescript(filename)
    tree = parse_tree(data, typescript)
    root = tree.root_node
    positions = _Positions(data)
    top = list(root.children)
    wrong, remarks = [], []  # (one walk for both)
    for n in walk(root):
        if n.type in NOT_STATEMENTS:
            remarks.append(n)
        elif n.type == "ERROR" or n.is_missing:
            wrong.append(n)
    errors = tuple(positions.span(n.start_byte, n.end_byte) for n in wrong)
    kind = detect_syntax(root, filename=filename, package_type=package_type)
    comments = tuple((n.start_byte, n.end_byte) for n in remarks)
    statement_ranges = tuple(
        (n.start_byte, n.end_byte) for n in top if n.type not in NOT_STATEMENTS
    )

    groups = _percent_groups(top, positions)
    fmt = "percent"
    if groups is None:
        fmt = "blank-lines"
        groups = _blank_line_groups(top, data)

    warnings = _buried_markers(top, remarks, positions)
    prologue = _prologue_end(top, len(data))
    cells: list[Cell] = []
    for group in groups:
        cell = _cell(len(cells) + 1, group, data, positions, prologue, typescript)
        if cell is None:
            continue
        if group.type == "markdown" and cell.statements:
            warnings.append(
                f"cell {cell.index} (line {cell.span.start_line}) is marked markdown "
                "but holds code; it runs as code"
            )
        cells.append(cell)
    return Notebook(
        data=data,
        format=fmt,
        kind=kind,
        cells=tuple(cells),
        comments=comments,
        statement_ranges=statement_ranges,
        parse_errors=errors,
        warnings=tuple(warnings),
        typescript=typescript,
    )


def _buried_markers(top: list[Node], remarks: list[Node], positions: _Positions) -> list[str]:
    """A warning for each `// %%` marker inside a statement (`remarks`: the comments
    anywhere): it starts no cell, so the code around it runs as one (an ASI join, a
    multi-line call or literal)."""
    tops = {n.id for n in top}
    warnings = []
    for node in remarks:
        if node.type != "comment" or node.id in tops or _marker(node, positions) is None:
            continue
        outer = [n for n in top if n.start_byte <= node.start_byte < n.end_byte]
        lines = ""
        if outer:
            span = positions.span(outer[0].start_byte, outer[0].end_byte)
            lines = f" (lines {span.start_line}-{span.end_line})"
        warnings.append(
            f"line {positions.line_of(node.start_byte)}: this `// %%` is inside a "
            f"statement{lines}, so it starts no cell"
        )
    return warnings


def _prologue_end(top: list[Node], end: int) -> int:
    """Where the directive prologue ends: the strings at the start are directives."""
    for node in top:
        if node.type in NOT_STATEMENTS or _is_string_statement(node):
            continue
        return node.start_byte
    return end


def _is_string_statement(node: Node) -> bool:
    return node.type == "expression_statement" and [c.type for c in node.named_children] == [
        "string"
    ]


# Cells made by the latest parses, by all that makes one (`_cell`): an edit leaves most
# cells as they were, at the same place (`tonic watch` parses at every save).
_MADE: dict[tuple[object, ...], Cell] = {}
_MADE_MAX = 4096


def _cell(
    index: int,
    group: _Group,
    data: bytes,
    positions: _Positions,
    prologue: int,
    typescript: bool,
) -> Cell | None:
    """The cell of `group`: made anew unless the same bytes made one at the same place,
    with the same top-level nodes, line and prologue."""
    starts = [n.start_byte for n in group.nodes]
    ends = [n.end_byte for n in group.nodes]
    if group.start is not None:
        starts.append(group.start)
        eol = data.find(b"\n", group.start)  # a marker line alone still spans that line
        ends.append(eol if eol >= 0 else len(data))
    if not starts:
        return None
    lo, hi = min(starts), max(ends)
    line = positions.line_of(lo)
    tops = tuple((n.type, n.start_byte, n.end_byte) for n in group.nodes)
    where = (lo, hi, line, positions.line_starts[line - 1], min(max(prologue, lo), hi))
    key = (typescript, index, group.title, group.type, group.start, where, tops, data[lo:hi])
    cell = _MADE.get(key)
    if cell is None:
        if len(_MADE) >= _MADE_MAX:
            _MADE.clear()
        cell = _MADE[key] = _make_cell(index, group, data, positions, prologue, (lo, hi))
    return cell


def _make_cell(
    index: int,
    group: _Group,
    data: bytes,
    positions: _Positions,
    prologue: int,
    extent: tuple[int, int],
) -> Cell:
    stmts = [n for n in group.nodes if n.type not in NOT_STATEMENTS]
    span = positions.span(*extent)
    bindings = [b for s in stmts for b in declared(s)]
    decl_ids = {b.name.id for b in bindings}
    refs = sorted(
        {
            text(n)
            for s in stmts
            for n in walk(s)
            if n.type in ("identifier", "shorthand_property_identifier") and n.id not in decl_ids
        }
    )
    deps = tuple(d for s in stmts for d in _dependencies(s, positions))
    last_expr: Span | None = None
    if stmts and stmts[-1].type == "expression_statement":
        expr = stmts[-1].named_children[0] if stmts[-1].named_children else None
        # A string in the prologue is a directive ('use strict'); a sequence would need
        # parentheses.
        directive = expr is not None and expr.type == "string" and expr.start_byte < prologue
        if expr is not None and not directive and expr.type != "sequence_expression":
            last_expr = positions.span(expr.start_byte, expr.end_byte)
    is_prose = group.type == "markdown" and not stmts
    return Cell(
        index=index,
        type="markdown" if is_prose else "code",
        title=group.title,
        span=span,
        source=data[span.start_byte : span.end_byte].decode("utf-8"),
        code=positions.span(stmts[0].start_byte, stmts[-1].end_byte) if stmts else None,
        statements=len(stmts),
        declarations=tuple(Declaration(text(b.name), b.kind) for b in bindings),
        references=tuple(refs),
        dependencies=deps,
        last_expression=last_expr,
        prose=_prose(group.nodes) if is_prose else None,
    )
