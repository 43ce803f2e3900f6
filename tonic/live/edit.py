"""An edit made in the page, written into the notebook's file.

The page sends the cell's new code and the digest of the file its cells came from. The
file is written only if it still holds exactly those bytes: a save in an editor after
the page drew the cells wins, and the page is told to look again (the same rule as two
saves: the later one is the file). The edit replaces the cell's code alone, its marker
line and the blank lines around it kept, in a new file renamed over the old one (its mode
kept), so a reader never sees half of it. The run follows from the save, like any other.
"""

from __future__ import annotations

import os
import threading

from tonic.errors import TonicError
from tonic.live.state import LiveNotebook, digest
from tonic.notebook.cells import MARKER_RE, Cell
from tonic.outputs import replace_file

_writing = threading.Lock()  # one edit at a time: check and write as one step


class EditRefused(TonicError):
    """The page's edit was not written (the reason is for the page)."""


def edit_cell(nb: LiveNotebook, index: int, code: str, version: str) -> bool:
    """Write `code` as cell `index` of the file whose bytes had the digest `version`;
    False when that changes nothing."""
    with _writing:
        found = nb.cell(index)
        if found is None:
            raise EditRefused(f"the notebook has no code cell {index} now; the page shows it anew")
        cell, parsed = found
        try:
            data = nb.path.read_bytes()
            mode = os.stat(nb.path).st_mode & 0o7777
        except OSError as err:
            raise EditRefused(f"{nb.name} cannot be read: {err.strerror}") from None
        if version != parsed or digest(data) != parsed:
            raise EditRefused(f"{nb.name} changed since the page showed it; the page shows it anew")
        new = replaced(data, cell, code)
        if new == data:
            return False
        try:
            replace_file(nb.path, new.decode("utf-8"), mode)
        except (OSError, UnicodeDecodeError) as err:
            raise EditRefused(f"{nb.name} could not be written: {err}") from None
        return True


def replaced(data: bytes, cell: Cell, code: str) -> bytes:
    """The file's bytes with the code of `cell` (without its marker line and the blank
    lines around it) replaced by `code`."""
    start, end = cell.span.start_byte, cell.span.end_byte
    source = data[start:end]
    first_end = source.find(b"\n")
    if first_end != -1 and MARKER_RE.match(source[:first_end].decode("utf-8", "replace").rstrip()):
        start += first_end + 1
        source = source[first_end + 1 :]
    body = source.strip(b"\n")
    start += source.index(body) if body else 0
    end = start + len(body)
    text = code.replace("\r\n", "\n").strip("\n")
    return data[:start] + text.encode("utf-8") + data[end:]
