"""Instrumentation inserts pause sites and value captures without moving user code."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE, FIXTURES
from tonic.notebook.cells import parse
from tonic.notebook.instrument import VALUE_PREFIX, instrument
from tonic.notebook.uncapture import Uncapture

SITE_RE = re.compile(
    rb";if\(__tonic__\.p\(\d+\)\)\{\(\(\)=>eval\(__tonic__\.t\(\)\)\)\(\);return\}|"
    rb";if\(__tonic__\.p\(\d+\)\)\{__tonic__\.m=import\.meta;"
    rb"await __tonic__\.e\(\(\(\)=>eval\(__tonic__\.t\(\)\)\)\(\)\)\}"
)


def sources() -> list[Path]:
    found = [*CONFORMANCE.rglob("*.js"), *CONFORMANCE.rglob("*.mjs"), *CONFORMANCE.rglob("*.cjs")]
    found += (FIXTURES / "parser").iterdir()
    return sorted(p for p in found if p.is_file())


def _strip(data: bytes) -> bytes:
    return SITE_RE.sub(b"", data).replace(VALUE_PREFIX, b"")


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.name)
@pytest.mark.parametrize("values", [False, True], ids=["plain", "values"])
def test_user_code_stays_in_place(path: Path, values: bool) -> None:
    data = path.read_bytes()
    nb = parse(data, filename=path.name)
    if not nb.clean:
        pytest.skip("not split: runs uninstrumented")
    out = instrument(nb, values=values).source
    # Removing what was inserted gives the original back (plus the trailing site's line).
    assert _strip(out).rstrip(b"\n") == data.rstrip(b"\n")
    # Every original line keeps its number, and the code on it its columns.
    orig_lines = data.split(b"\n")
    new_lines = out.split(b"\n")
    shifted = dict(instrument(nb, values=values).shifted)
    for number, line in enumerate(orig_lines):
        changed = new_lines[number]
        if changed != line:
            if values:
                assert _strip(changed) == line
                # a capture before code on its line is one whose shift is known
                after = changed.partition(VALUE_PREFIX)[2]
                assert number + 1 in shifted or after.strip()[:2] in (b"", b"//", b"/*")
            else:
                # without values, only free lines (blank or comment-only) receive a site
                assert SITE_RE.match(changed) and line.strip()[:2] in (b"", b"//", b"/*", b"*")


def test_pause_after_every_code_cell_and_value_capture() -> None:
    src = b"// %% a\nconst a = 1;\n\n// %% [markdown]\n// prose\n\n// %% b\na + 1\n"
    nb = parse(src, filename="nb.js")
    plain = instrument(nb)
    assert plain.pauses == (1, 3)
    assert plain.values == ()
    out = instrument(nb, values=True)
    assert out.values == (3,)
    assert b";__tonic__.v=// %% b\na + 1" in out.source


def test_no_value_capture_for_directives_and_sequences() -> None:
    nb = parse(b"'use strict'\n\nfoo()\nbar(), baz()\n", filename="nb.js")
    assert instrument(nb, values=True).values == ()


def test_esm_sites_do_not_return() -> None:
    nb = parse(b"import fs from 'fs';\n\nconsole.log(fs)\n", filename="nb.mjs")
    assert b"return" not in instrument(nb).source


@dataclass(frozen=True)
class Capture:
    name: str
    source: bytes
    captured: tuple[int, ...]  # the cells whose value is recorded
    shifted: tuple[tuple[int, int], ...] = ()  # (line, UTF-16 column) of in-line captures
    filename: str = "nb.js"
    shows: bytes = b""  # a part of the instrumented source


CAPTURES = [
    Capture("line 1: the whole file", b"6 * 7\n", (1,), ((1, 0),), shows=b";__tonic__.v=6 * 7"),
    Capture(
        "after a statement on its line",
        b"const a = 1; a + 1\n",
        (1,),
        ((1, 13),),
        shows=b"const a = 1; ;__tonic__.v=a + 1",
    ),
    Capture("line above: no shift", b"const a = 1\n\na + 1\n", (2,), shows=b";__tonic__.v=\na + 1"),
    Capture(
        "before a comment ending the line above",
        b"foo() // c\nbar()\n",
        (1,),
        shows=b"foo() ;__tonic__.v=// c\nbar()",
    ),
    Capture("after a block comment on its line", b"/* c\n */ 1 + 1\n", (1,), ((2, 4),)),
    Capture("under a hashbang", b"#!/usr/bin/env node\n1 + 1\n", (1,), ((2, 0),)),
    Capture("after a BOM", b"\xef\xbb\xbf1 + 1\n", (1,), ((1, 0),)),
    Capture(
        "non-ASCII before it: UTF-16 columns",
        "const s = 'é😀'; s\n".encode(),
        (1,),
        ((1, 17),),
    ),
    Capture("CRLF, line above", b"const a = 1;\r\n\r\na + 1\r\n", (2,), shows=b"=\r\na + 1"),
    Capture("CRLF, same line", b"const a = 1; a\r\n", (1,), ((1, 13),)),
    Capture("comment-heavy", b"// %% c\n/* a\n b */ /* c */ x // d\n/* e */\n", (1,), ((3, 14),)),
    Capture("a block, which tree-sitter takes for an object", b"{a: 1}\n", ()),
    Capture("a parenthesized function", b"(function () {})\n", (1,), ((1, 0),)),
    Capture("a directive", b"'use strict'\n", ()),
    Capture("strings after the prologue", b"'use strict'\n\nf()\n\n'x'\n", (2, 3)),
    Capture("await in ESM", b"await 1\n", (1,), ((1, 0),), "nb.mjs", b";__tonic__.v=await 1"),
    Capture(
        "an ES module's first line", b"import fs from 'fs'; fs.sep\n", (1,), ((1, 21),), "nb.mjs"
    ),
    Capture("a sequence", b"1, 2\n", ()),
]


@pytest.mark.parametrize("case", CAPTURES, ids=lambda c: c.name)
def test_value_captures(case: Capture) -> None:
    nb = parse(case.source, filename=case.filename)
    assert nb.clean
    out = instrument(nb, values=True)
    assert out.values == case.captured
    assert out.shifted == case.shifted
    assert case.shows in out.source
    assert _strip(out.source).rstrip(b"\n") == case.source.rstrip(b"\n")


# Each source ends in an uncaught error on (or caused from) a line with a capture.
ERRORS = [
    ("nb.js", "const o = {}; o.x.y\n"),
    ("nb.js", '\tconst s = "é😀"; \ts.x.y\n'),
    ("nb.js", "const f = () => null.x; f()\n"),
    ("nb.js", "const g = () => { throw new Error('g') }; 0\n\ng()\n"),
    ("nb.js", "console.log(new Error('x').stack.split('\\n')[1])\n\nnull.y\n"),
    ("nb.js", "const a = 1; [1,\n  null.x]\n"),
    ("nb.js", "/* c\n */ " + "x; " * 40 + "null.z\n"),
    ("nb.mjs", "console.log(1); null.boom\n"),
    ("nb.mjs", "const n = await 1; n.x.y\n"),
]


@pytest.mark.parametrize(("name", "source"), ERRORS)
def test_uncapture_gives_nodes_text(tmp_path: Path, name: str, source: str) -> None:
    """node's report of the instrumented file, uncaptured, is its report of the file."""
    path = tmp_path / name
    stub = tmp_path / "stub.cjs"
    stub.write_text("globalThis.__tonic__ = { p() { return false }, v: undefined };\n")

    def run(data: bytes) -> bytes:
        path.write_bytes(data)
        cmd = ["node", "-r", str(stub), str(path)]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        return proc.stdout + b"--- stderr ---\n" + proc.stderr

    nb = parse(source.encode(), filename=name)
    instrumented = instrument(nb, values=True)
    assert instrumented.shifted
    got = run(instrumented.source)
    fix = Uncapture(instrumented, path)
    assert fix.data(bytearray(got)) == run(source.encode())


def test_uncapture_moves_only_the_notebooks_positions() -> None:
    nb = parse(b"const a = 1; a\n", filename="nb.js")
    fix = Uncapture(instrument(nb, values=True), Path("/a/nb.js"))
    text = "at /a/nb.js:1:30 (file:///a/nb.js:1:30) '/a/nb.js:1:30' /x/a/nb.js:1:30 /a/nb.js:2:30"
    assert fix.text(text) == (
        "at /a/nb.js:1:17 (file:///a/nb.js:1:17) '/a/nb.js:1:17' /x/a/nb.js:1:30 /a/nb.js:2:30"
    )
    assert fix.text("/a/nb.js:1:13 /a/nb.js:1:26") == "/a/nb.js:1:13 /a/nb.js:1:26"
