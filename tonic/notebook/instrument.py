"""Inserts synchronous pause sites between cells without moving any original character.

Strategy C of the semantics notes: node compiles the whole file as one module, and the
kernel's `__tonic__.p(k)` blocks in a system call after cell k. A pause site goes on a
line between cells that holds no code (blank, or only comments), so every line and
column of the user's code stays where it was, and the source line node prints for an
uncaught error is the user's own. After the last cell it goes on a new trailing line.

A cell whose last statement is an expression gets `;__tonic__.v=` (a value capture),
which records its completion value: at the end of the line above that statement when it
may go there, which shifts no column; else right before the expression, on its own line
(line 1, or after another statement or a comment on that line), which moves the rest of
that line by len(VALUE_PREFIX) columns. The capture never changes how a statement parses:
none goes before an expression that a statement cannot begin with (`{`, `function`,
`class`, `let [`), which tree-sitter may still take for one. `uncapture.py` takes the
captures back out of what node writes (its error reports, stack traces).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from tonic.notebook.cells import Cell, Notebook, Span

VALUE_PREFIX = b";__tonic__.v="
# What an expression statement cannot begin with (ECMA-262 §14.5): an expression starting
# so changes meaning at a statement start. tree-sitter may still parse `{a: 1}` there as
# an object, where node sees a block; after a capture's `=` it would be an object.
STATEMENT_START_RE = re.compile(r"^(?:\{|function\b|class\b|async\s+function\b|let\s*\[)")
LINE_TERMINATOR_RE = re.compile("\r\n|[\n\r\u2028\u2029]")  # JavaScript's line ends


def utf16_length(text: str) -> int:
    """Columns as V8 counts them: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True)
class Instrumented:
    source: bytes
    pauses: tuple[int, ...]  # indices of the cells after which the kernel pauses
    values: tuple[int, ...]  # indices of the cells whose completion value is recorded
    # (line, column) of each value capture inserted on a code line, the column in UTF-16
    # code units from 0, as V8 counts them: what comes after it on that line moved right.
    shifted: tuple[tuple[int, int], ...] = ()


def pause_site(index: int, *, esm: bool) -> bytes:
    if esm:
        # An ES module has no top-level `return`: a resumed run evaluates the edited rest
        # of the module as an async arrow function (its top-level `await`s), hands the
        # eval its `import.meta` and awaits it; then the stale rest is skipped by a throw
        # that the kernel takes from node's uncaught-exception handler. The dead `await`
        # of a fresh run changes nothing node shows (its module is async, as with any
        # top-level await).
        return (
            f";if(__tonic__.p({index})){{__tonic__.m=import.meta;"
            "await __tonic__.e((()=>eval(__tonic__.t()))())}"
        ).encode()
    # CommonJS: a resumed run can continue here with an edited suffix (see semantics §4C).
    # The direct eval sits in an arrow function: an eval in the module function itself
    # would make V8 look every free name up dynamically, which moves the column node
    # reports for a ReferenceError.
    return f";if(__tonic__.p({index})){{(()=>eval(__tonic__.t()))();return}}".encode()


class _Layout:
    def __init__(self, nb: Notebook) -> None:
        self.data = nb.data
        self.line_starts = [0] + [i + 1 for i, b in enumerate(nb.data) if b == 0x0A]
        self.comments = sorted(nb.comments)
        self.comment_starts = [s for s, _ in self.comments]

    def comment_around(self, offset: int) -> tuple[int, int] | None:
        """The comment with start < offset <= end, if any."""
        i = bisect.bisect_left(self.comment_starts, offset) - 1
        if i >= 0:
            s, e = self.comments[i]
            if s < offset <= e:
                return s, e
        return None

    def free_line(self, start: int, end: int) -> int | None:
        """Start of the first line wholly inside the gap (start, end) outside comments."""
        i = bisect.bisect_right(self.line_starts, start)
        while i < len(self.line_starts):
            line = self.line_starts[i]
            newline = self.data.find(b"\n", line)
            if newline == -1 or newline >= end:
                return None
            around = self.comment_around(line)
            if around is None or around[0] == line:
                return line
            i += 1
        return None

    def value_point(self, cell: Cell) -> tuple[int, bool] | None:
        """Where `;__tonic__.v=` goes so that it binds to the cell's last expression, and
        whether that is on the expression's own line; None when it cannot be captured."""
        expr = cell.last_expression
        if expr is None:
            return None
        if STATEMENT_START_RE.match(self.data[expr.start_byte : expr.end_byte].decode()):
            return None
        above = self.point_above(expr)
        return (expr.start_byte, True) if above is None else (above, False)

    def point_above(self, expr: Span) -> int | None:
        """The end of the line above `expr` (before a comment ending it), when only blanks
        come between: a capture there shifts no column."""
        if expr.start_line == 1:
            return None
        line_start = self.line_starts[expr.start_line - 1]
        if self.data[line_start : expr.start_byte].strip():
            return None
        point = line_start - 1  # the newline ending the previous line
        if self.data[point - 1 : point] == b"\r":
            point -= 1  # CRLF: a lone CR would end a line in JavaScript
        around = self.comment_around(point)
        if around is not None:
            if around[0] == 0 and self.data.startswith(b"#!"):
                return None
            point = around[0]
            if self.comment_around(point) is not None:
                return None
        return point


def uninstrumented(nb: Notebook) -> Instrumented:
    """The file as it is: it runs as one piece, with no pause (when it cannot be split)."""
    return Instrumented(nb.data, (), ())


def instrument(nb: Notebook, *, values: bool = False) -> Instrumented:
    """The notebook's source with pause sites (and, if `values`, value captures) inserted.

    Value captures sit on code lines, which node shows when it reports an error there
    (uncapture.py undoes that in the texts tonic shows); `tonic run --plain` never asks
    for them, so its bytes are node's own.
    """
    layout = _Layout(nb)
    code = nb.code_cells
    inserts: list[tuple[int, int, bytes]] = []
    captured: list[int] = []
    shifted: list[tuple[int, int]] = []
    for i, cell in enumerate(code):
        assert cell.code is not None
        site = pause_site(cell.index, esm=nb.kind.esm)
        if i + 1 < len(code):
            nxt = code[i + 1].code
            assert nxt is not None
            at = layout.free_line(cell.code.end_byte, nxt.start_byte)
            if at is None:
                inserts.append((cell.code.end_byte, 0, site))
            else:
                inserts.append((at, 0, site))
        else:
            inserts.append((len(nb.data), 0, b"\n" + site + b"\n"))
        point = layout.value_point(cell) if values else None
        if point is not None:
            inserts.append((point[0], 1, VALUE_PREFIX))
            captured.append(cell.index)
            if point[1]:
                shifted.append(_position(nb.data, point[0]))
    out = bytearray()
    pos = 0
    for offset, _, text in sorted(inserts):
        out += nb.data[pos:offset] + text
        pos = offset
    out += nb.data[pos:]
    pauses = tuple(c.index for c in code)
    return Instrumented(bytes(out), pauses, tuple(captured), tuple(shifted))


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """V8's line (from 1) and column (UTF-16 units, from 0) of byte `offset` of `data`."""
    # node's loaders drop a byte order mark before V8 sees the source
    before = data[:offset].decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    lines = LINE_TERMINATOR_RE.split(before)
    return len(lines), utf16_length(lines[-1])
