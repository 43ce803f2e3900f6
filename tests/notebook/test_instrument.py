"""Instrumentation inserts pause sites and value captures without moving user code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE, FIXTURES
from tonic.notebook.cells import parse
from tonic.notebook.instrument import VALUE_PREFIX, instrument

SITE_RE = re.compile(
    rb";if\(__tonic__\.p\(\d+\)\)\{\(\(\)=>eval\(__tonic__\.t\(\)\)\)\(\);return\}|"
    rb";__tonic__\.p\(\d+\);"
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
    for number, line in enumerate(orig_lines):
        changed = new_lines[number]
        if changed != line:
            if values:
                assert _strip(changed) == line
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
