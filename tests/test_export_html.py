"""`tonic export --html`: one self-contained page of a notebook's recorded run (prose as
Markdown, code highlighted, outputs as text, node's report of an error), written again
without running anything when the notebook is unchanged, and its refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import tonic

NOTEBOOK = """// %% [markdown]
// # A report
// Some *prose*, a [link](https://example.com), <b>raw html</b> and [js](javascript:x).

// %% load
const rows = [{a: 1, b: 'x'}, {a: 2, b: '<script>alert(1)</script>'}];
console.log(rows);
console.error('careful');
console.log(Array.from({length: 60}, (_, i) => 'line ' + i).join('\\n'));
rows.length

// %% boom
null.boom;
"""


@pytest.fixture
def page(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "report.js"
    path.write_text(NOTEBOOK)
    return path, tmp_path / "report.html"


def _export(path: Path, out: Path, *extra: str) -> str:
    got = tonic("export", "--html", str(path), "-o", str(out), *extra, cwd=path.parent)
    assert got.code == 0, got.describe()
    return got.stdout.decode()


def test_the_page_of_a_run(page: tuple[Path, Path]) -> None:
    path, out = page
    _export(path, out)
    html = out.read_text()
    assert '<meta name="generator" content="tonic' in html
    assert "<h1>A report</h1>" in html and "<em>prose</em>" in html
    assert '<a href="https://example.com">link</a>' in html
    assert "&lt;b&gt;raw html&lt;/b&gt;" in html and 'href="javascript' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # printed text stays text
    assert re.search(r'<pre class="stderr">careful</pre>', html)
    assert '<pre class="value">=&gt; 2</pre>' in html
    assert "<details><summary>stdout: 61 lines</summary>" in html  # a long output folds
    assert "TypeError: Cannot read properties of null (reading &#39;boom&#39;)" in html
    assert re.search(r'class="k-kd">const<', html)  # highlighted code
    # self-contained and inert: no script, nothing loaded from elsewhere
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=", html, re.IGNORECASE)


def test_an_unchanged_notebook_runs_nothing(page: tuple[Path, Path]) -> None:
    path, out = page
    assert "after a run" in _export(path, out)
    first = out.read_text()
    assert "nothing ran" in _export(path, out)
    assert out.read_text() == first  # the same page, byte for byte


def test_no_outputs_leaves_code_and_prose(page: tuple[Path, Path]) -> None:
    path, out = page
    _export(path, out, "--no-outputs")
    html = out.read_text()
    assert "<em>prose</em>" in html and '<pre class="stderr">' not in html
    assert "TypeError" not in html and "line 59" not in html


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("notes.html", "exists and is not a page tonic wrote; use --force"),
        ("report.js", "is the notebook"),
        ("folder", "is a folder"),
    ],
)
def test_refusals(page: tuple[Path, Path], target: str, why: str) -> None:
    path, _ = page
    (path.parent / "notes.html").write_text("<p>mine</p>")
    (path.parent / "folder").mkdir()
    got = tonic("export", "--html", str(path), "-o", target, cwd=path.parent)
    assert got.code == 2 and why in got.stderr.decode(), got.describe()
    assert (path.parent / "notes.html").read_text() == "<p>mine</p>"
    assert path.read_text() == NOTEBOOK
    forced = tonic("export", "--html", str(path), "-o", "notes.html", "--force", cwd=path.parent)
    assert forced.code == 0


def test_one_notebook_a_page(page: tuple[Path, Path]) -> None:
    path, out = page
    other = path.parent / "other.js"
    other.write_text("console.log(1);\n")
    got = tonic("export", "--html", str(path), str(other), "-o", str(out), cwd=path.parent)
    assert got.code == 2 and "--html exports one notebook" in got.stderr.decode()
