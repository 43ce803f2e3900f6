"""What node wrote, as node would have written it without the value captures.

The view's run has `;__tonic__.v=` before some cells' last expressions (instrument.py).
Where node shows the instrumented source, tonic shows the user's again:

- the source line of node's error report loses the capture, and the caret line under it
  (node writes one blank or tab per byte of the line before the error, then `^`s) loses
  the blanks the capture's bytes added;
- a position `FILE:LINE:COL` in the notebook's file (stack frames, in node's report, in
  the kernel's error text, in anything the notebook printed) after a capture on LINE
  moves back by the capture's length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from tonic.notebook.instrument import VALUE_PREFIX, Instrumented, utf16_length

PREFIX = VALUE_PREFIX.decode()
WIDTH = len(PREFIX)
CARET_RE = re.compile(r"[ \t]*\^*")


class Uncapture:
    """Undoes the value captures of one instrumented notebook in the texts of its run."""

    def __init__(self, instrumented: Instrumented, path: Path) -> None:
        self.active = bool(instrumented.values)
        self.shifted: Mapping[int, int] = dict(instrumented.shifted)
        path = path.absolute()
        names = "|".join(map(re.escape, (path.as_uri(), str(path))))
        # not the end of a longer path (/x/a/nb.js where the notebook is /a/nb.js)
        self.position = re.compile(rf"(?<![\w./~-])(?P<file>{names}):(?P<line>\d+):(?P<col>\d+)")

    def data(self, data: bytearray) -> bytearray:
        """`data` (bytes as written, any encoding) with the captures taken out."""
        if not self.active or not data:
            return data
        text = data.decode("utf-8", "surrogateescape")
        return bytearray(self.text(text).encode("utf-8", "surrogateescape"))

    def text(self, text: str) -> str:
        if not self.active:
            return text
        if PREFIX in text:
            text = _source_lines(text)
        if self.shifted:
            text = self.position.sub(self._moved, text)
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self.text(text)

    def _moved(self, m: re.Match[str]) -> str:
        at = self.shifted.get(int(m["line"]))
        col = int(m["col"])
        if at is None or col - 1 < at + WIDTH:
            return m[0]
        return f"{m['file']}:{m['line']}:{col - WIDTH}"


def _source_lines(text: str) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        at = line.find(PREFIX)
        if at == -1:
            continue
        lines[i] = line.replace(PREFIX, "")
        if i + 1 < len(lines) and CARET_RE.fullmatch(lines[i + 1]):
            before = line[:at]
            lines[i + 1] = _caret(lines[i + 1], utf16_length(before), _utf8_length(before))
    return "\n".join(lines)


def _utf8_length(text: str) -> int:
    try:
        return len(text.encode("utf-8", "surrogateescape"))  # bytes as node wrote them
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))  # a JavaScript string's halves


def _caret(line: str, column: int, byte: int) -> str:
    """Node's caret line under a source line whose capture began at `column` (UTF-16
    units) and `byte`: node wrote one blank per UTF-16 unit before the error's start,
    each a tab where the line's byte at that index is one, and the capture's bytes are
    blanks; without the capture, the error starts WIDTH units earlier."""
    start = len(line) - len(line.lstrip(" \t"))
    if start < column + WIDTH:
        return line  # the error is before the capture
    blanks = line[:start]
    return (blanks[:byte] + blanks[byte + WIDTH :])[: start - WIDTH] + line[start:]
