"""`tonic export --html`: one self-contained page of a notebook's recorded run (prose as
Markdown, code highlighted, outputs as text, node's report of an error, rich values),
written again without running anything when the notebook is unchanged, and its
refusals; the rich forms of values (`Symbol.for('tonic.mime')`, pictures in Buffers,
tables of plain objects) as `--json` records them, read without running any of the
notebook's code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import node, tonic

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


RICH = """const MIME = Symbol.for('tonic.mime');

// %% html
({ [MIME]: { 'text/html': '<b>bold</b><script>parent.document.title = 1</script>' } });

// %% svg
({ [MIME]: { 'image/svg+xml': '<svg xmlns="http://www.w3.org/2000/svg"><circle r="8"/></svg>' } });

// %% png
Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

// %% table
[{ name: 'a', n: 1 }, { name: 'b', n: 2, extra: true }];

// %% markdown
({ [MIME]: { 'text/markdown': '# Title\\n\\n*it*' } });

// %% a proxy and a getter: nothing of theirs runs
delete Array.prototype[Symbol.iterator];
new Proxy({}, { getOwnPropertyDescriptor() { console.log('TRAP'); } });

// %% getter
({ get [MIME]() { console.log('GETTER'); return {}; } });
"""


def test_rich_values(tmp_path: Path) -> None:
    import json

    path = tmp_path / "rich.js"
    path.write_text(RICH)
    got = tonic("run", "--json", str(path), cwd=tmp_path)
    cells = json.loads(got.stdout)["cells"]
    plain = tonic("run", "--plain", str(path), cwd=tmp_path)
    assert plain == node(path)  # under node an ordinary value: nothing printed
    assert [sorted(c.get("mime", {})) for c in cells] == [
        [],
        ["text/html"],
        ["image/svg+xml"],
        ["image/png"],
        ["application/vnd.tonic.table+json"],
        ["text/markdown"],
        [],
        [],
    ]
    assert cells[3]["mime"]["image/png"] == "base64:iVBORw0KGgoAAAANSUhEUg=="
    assert all("TRAP" not in c["stdout"] and "GETTER" not in c["stdout"] for c in cells)
    out = tmp_path / "rich.html"
    _export(path, out)
    html = out.read_text()
    # HTML in a frame without scripts and with an origin of its own, its markup escaped
    frames = re.findall(r"<iframe[^>]*>", html)
    assert frames == [
        '<iframe class="rich" sandbox srcdoc="&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;'
        'parent.document.title = 1&lt;/script&gt;">'
    ]
    images = re.findall(r'<img class="rich" alt="[^"]*" src="([^"]*)">', html)
    assert [i.split(";")[0] for i in images] == ["data:image/svg+xml", "data:image/png"]
    assert "<th>name</th><th>n</th><th>extra</th>" in html and "<td>true</td>" in html
    assert '<div class="rich prose"><h1>Title</h1>' in html
    assert not re.search(r"<script|<link|\bsrc=\"(?!data:)", html, re.IGNORECASE)


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
