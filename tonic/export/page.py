"""`tonic export --html`: one self-contained page of a notebook's recorded run.

Code cells are highlighted by pygments and prose cells rendered as CommonMark by
markdown-it-py (both kept libraries, already there as rich's own), into the jinja2
template `templates/page.html.j2` with autoescaping: what the notebook printed is text
on the page, never markup. The page has no script and loads nothing: its style is inline
and long outputs fold in `<details>`. The same run gives the same page, byte for byte (no
date, nothing of where the cells' results came from). A page carries a generator mark;
an existing file without one is not replaced unless forced.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import JavascriptLexer

import tonic
from tonic.errors import ExportError
from tonic.export.deps import shown
from tonic.export.render import NotebookRun, code_of, templates_dir
from tonic.outputs import replace_file
from tonic.results import TREE, CellResult, beside, ending

TEMPLATE = "page.html.j2"
GENERATOR = f"tonic {tonic.__version__}"
MARK = '<meta name="generator" content="tonic'  # how a page of tonic's starts its head
FOLD_LINES = 40  # outputs longer than this are folded


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _formatter() -> HtmlFormatter:
    return HtmlFormatter(nowrap=True, classprefix="k-")


@cache
def lexer() -> JavascriptLexer:
    """The highlighter's lexer (its rules compile at the first use: ~40 ms; the warm
    server makes it ahead)."""
    return JavascriptLexer()


def style() -> str:
    """The highlighted code's style sheet."""
    return str(_formatter().get_style_defs(".code"))


def _prose(text: str) -> str:
    """A prose cell as HTML: CommonMark, its raw HTML escaped, links kept."""
    return str(MarkdownIt("commonmark", {"html": False}).render(text))


TABLE = "application/vnd.tonic.table+json"
IMAGES = ("image/png", "image/jpeg", "image/gif")
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")


def _text(data: str) -> str:
    return (
        base64.b64decode(data[7:]).decode("utf-8", "replace")
        if data.startswith("base64:")
        else data
    )


def rich(mime: dict[str, str]) -> dict[str, object] | None:
    """The richest form of a value the page can show safely: HTML in a sandboxed frame
    (no script, an origin of its own: it cannot reach the page), SVG and pictures as
    images from data: URLs (no script runs in those), Markdown, a table."""
    if "text/html" in mime:
        return {"kind": "html", "html": _text(mime["text/html"])}
    for kind in ("image/svg+xml", *IMAGES):
        data = mime.get(kind)
        if data is None:
            continue
        data = data[7:] if data.startswith("base64:") else data
        if kind == "image/svg+xml" and not mime[kind].startswith("base64:"):
            data = base64.b64encode(data.encode()).decode()
        if BASE64.fullmatch(data):
            return {"kind": "image", "src": f"data:{kind};base64,{''.join(data.split())}"}
    if "text/markdown" in mime:
        return {"kind": "markdown", "html": _prose(_text(mime["text/markdown"]))}
    if TABLE in mime:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            shape = json.loads(mime[TABLE])
            columns = [str(c) for c in shape["columns"]]
            rows = [[str(row.get(c, "")) for c in columns] for row in shape["rows"]]
            return {"kind": "table", "columns": columns, "rows": rows}
    return None


Text = Callable[[bytearray | str | None], str]


def tree(data: str) -> Markup | None:
    """A value's tree (kernel.js tree()) as nested `<details>`, the first level open; None
    when `data` is not one."""
    try:
        root = json.loads(data)
        return _node(root, 0) if isinstance(root, list) and len(root) == 2 else None
    except (ValueError, TypeError, RecursionError):
        return None


def _node(node: list[object], depth: int) -> Markup:
    label = escape(str(node[0]))
    kids = node[1] if len(node) > 1 and isinstance(node[1], list) else []
    if not kids or depth > 20:
        return Markup('<span class="leaf">{}</span>').format(label)
    items = Markup("").join(
        Markup('<li><span class="key">{}</span>: {}</li>').format(
            str(kid[0]), _node(kid[1], depth + 1)
        )
        for kid in kids
        if isinstance(kid, list) and len(kid) == 2 and isinstance(kid[1], list) and kid[1]
    )
    shut = "" if depth else " open"
    return Markup("<details{}><summary>{}</summary><ul>{}</ul></details>").format(
        Markup(shut), label, items
    )


def _output(text: Text, cr: CellResult, outputs: bool, shown: bool) -> list[dict[str, object]]:
    """A cell's recorded output, in order: (kind, text, folded); its value as text unless
    it is `shown` in a rich form or as a tree."""
    if not outputs:
        return []
    parts = [("stdout", text(cr.stdout)), ("stderr", text(cr.stderr))]
    if cr.value is not None and not shown:
        parts.append(("value", "=> " + text(cr.value)))
    if cr.error is not None and not cr.stderr:
        parts.append(("error", text(cr.error)))
    return [
        {"kind": kind, "text": out.rstrip("\n"), "folded": out.count("\n") > FOLD_LINES}
        for kind, out in parts
        if out
    ]


def _provenance(folder: Path, cr: CellResult) -> str:
    read = sorted(beside(p, folder) for p in cr.read_only())
    wrote = [beside(p, folder) for p in sorted(cr.wrote)]
    parts = (["read " + ", ".join(read)] if read else []) + (
        ["wrote " + ", ".join(wrote)] if wrote else []
    )
    return " · ".join(parts)


def cell_view(
    cr: CellResult, text: Text, folder: Path, *, outputs: bool = True
) -> dict[str, object] | None:
    """What a page shows of one cell (None: nothing, an empty cell); `text` turns what
    the cell printed into the page's text, `folder` is the notebook's."""
    cell = cr.cell
    if cell.type == "markdown":
        return (
            {"type": "markdown", "index": cell.index, "html": _prose(cell.prose)}
            if cell.prose
            else None
        )
    code = code_of(cell)
    if not code:
        return None
    shown = rich(cr.mime) if outputs and cr.mime else None
    shape = tree(cr.mime[TREE]) if outputs and shown is None and TREE in cr.mime else None
    return {
        "type": "code",
        "index": cell.index,
        "title": cell.title,
        "lines": f"{cell.span.start_line}-{cell.span.end_line}",
        "code": highlight(code, lexer(), _formatter()),
        "status": cr.status,
        "ms": None if cr.ms is None else f"{cr.ms:.0f} ms",
        "outputs": _output(text, cr, outputs, shown is not None or shape is not None),
        "rich": shown,
        "tree": shape,
        "provenance": _provenance(folder, cr) if outputs else "",
    }


def cells(run: NotebookRun, *, outputs: bool = True) -> list[dict[str, object]]:
    views = (cell_view(cr, run.text, run.path.parent, outputs=outputs) for cr in run.result.cells)
    return [v for v in views if v is not None]


def render_page(run: NotebookRun, *, outputs: bool = True) -> str:
    result = run.result
    tail = run.text(result.tail.stdout) + run.text(result.tail.stderr)
    if result.tail.error and not result.tail.stderr:
        tail += run.text(result.tail.error)
    ran = sum(1 for r in result.cells if r.status in ("ok", "error"))
    code = sum(1 for r in result.cells if r.cell.runs)
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            title=run.rel,
            generator=GENERATOR,
            style=style(),
            cells=cells(run, outputs=outputs),
            tail=tail.rstrip("\n") if outputs else "",
            summary=f"{ran}/{code} cells ran · {ending(result)}",
        )
    )


def write_page(
    out: Path, text: str, *, force: bool, protected: list[Path], dry: bool = False
) -> None:
    """`text` as the file `out`, all at once (a new file renamed over the old): refused
    over a notebook, a folder, or a file that is not a page of tonic's (unless `force`);
    `dry`: only the refusals, before anything runs."""
    if out in protected:
        raise ExportError(f"{shown(out)}: is the notebook; choose another file (-o)")
    if out.is_dir():
        raise ExportError(f"{shown(out)}: is a folder; give the page's file name (-o)")
    if out.exists() and not force and MARK not in _head(out):
        raise ExportError(
            f"{shown(out)}: exists and is not a page tonic wrote; use --force to replace it"
        )
    if dry:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_file(out, text)


def _head(path: Path) -> str:
    """The start of a file, where a page's generator mark would be."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(2048)
    except OSError:
        return ""
