"""`tonic serve`'s page in a real headless Chromium: it loads with the token and not
without; outputs appear; a save on disk updates it; an edit made in it lands in the file
and runs; an error shows node's report; a table, a tree and an image render; an HTML
output cannot reach the page. Each test saves a screenshot in its temporary folder."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.serving import Served, browser, require_browser, served

NOTEBOOK = """// %% [markdown]
// # Live
// A page that follows the file.

// %% data
const rows = [{ name: 'a', n: 1 }, { name: 'b', n: 2 }];
console.log('rows', rows.length);

// %% last
console.log('last', 1);
"""
SHOTS_WAIT_MS = 20_000  # what a slow machine may need for a run


def png() -> bytes:
    """A 2x2 red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\0" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require_browser()
    with browser() as b:
        yield b


@pytest.fixture
def page(chromium: Any, tmp_path: Path) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    shown = context.new_page()
    shown.set_default_timeout(SHOTS_WAIT_MS)
    try:
        yield shown
    finally:
        shown.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        context.close()


def save(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # as editors save: a new file renamed over
    tmp.write_text(text)
    tmp.replace(path)


def test_the_page_loads_with_the_token_and_refuses_without(page: Any, tmp_path: Path) -> None:
    with _started(tmp_path) as server:
        refused = page.goto(server.base + "/")
        assert refused.status == 403 and "token" in page.content()
        assert page.goto(server.base + "/?token=wrong").status == 403
        assert page.goto(server.url).status == 200
        page.locator("#link", has_text="live").wait_for()
        assert page.locator("#cells .prose h1").inner_text() == "Live"
        page.locator("#cell-3 pre.stdout", has_text="last 1").wait_for()
        assert page.locator("#cell-2 pre.stdout").inner_text() == "rows 2"
        assert "exit code 0" in page.locator("#status").inner_text()
        # the cookie is the browser's: elsewhere, the event stream still wants the token
        assert server.get("/n/0/events")[0] == 403


def test_a_save_on_disk_updates_the_page(page: Any, tmp_path: Path) -> None:
    with _started(tmp_path) as s:
        page.goto(s.url)
        page.locator("#cell-3 pre.stdout", has_text="last 1").wait_for()
        saved = time.monotonic()
        save(tmp_path / "nb.js", NOTEBOOK.replace("'last', 1", "'last', 2"))
        page.locator("#cell-3 pre.stdout", has_text="last 2").wait_for()
        took = time.monotonic() - saved
        assert "nb.js changed" in page.locator("#status").inner_text()
        print(f"a save showed on the page after {took:.2f} s")


def test_an_edit_in_the_page_lands_in_the_file_and_runs(page: Any, tmp_path: Path) -> None:
    with _started(tmp_path) as s:
        page.goto(s.url)
        page.locator("#cell-3 pre.stdout", has_text="last 1").wait_for()
        page.locator("#cell-3 pre.code").click()
        area = page.locator("#cell-3 textarea.edit")
        assert area.input_value() == "console.log('last', 1);"
        area.fill("console.log('edited in the page', 7);")
        area.press("Shift+Enter")
        page.locator("#cell-3 pre.stdout", has_text="edited in the page 7").wait_for()
        text = (tmp_path / "nb.js").read_text()
        assert text == NOTEBOOK.replace(
            "console.log('last', 1);", "console.log('edited in the page', 7);"
        )
        assert page.locator("#cell-2 .head", has_text="ran").count() == 1


def test_an_edit_of_a_file_changed_since_is_refused(page: Any, tmp_path: Path) -> None:
    with _started(tmp_path) as s:
        page.goto(s.url)
        page.locator("#cell-3 pre.stdout", has_text="last 1").wait_for()
        page.locator("#cell-3 pre.code").click()  # editing: the page holds its drawing
        save(tmp_path / "nb.js", NOTEBOOK.replace("'last', 1", "'last', 5"))
        s.lines(b"nb.js changed")
        area = page.locator("#cell-3 textarea.edit")
        area.fill("console.log('too late');")
        area.press("Shift+Enter")
        page.locator(".hint.refused", has_text="changed since the page showed it").wait_for()
        assert "'last', 5" in (tmp_path / "nb.js").read_text()
        area.press("Escape")
        page.locator("#cell-3 pre.stdout", has_text="last 5").wait_for()


def test_an_error_shows_nodes_report(page: Any, tmp_path: Path) -> None:
    text = NOTEBOOK.replace("console.log('last', 1);", "throw new Error('boom');")
    with _started(tmp_path, text) as s:
        page.goto(s.url)
        report = page.locator("#cell-3 pre.stderr")
        report.wait_for()
        shown = report.inner_text()
        assert "Error: boom" in shown and f"{tmp_path / 'nb.js'}:10" in shown, shown
        assert page.locator("#cell-3 .head .error").inner_text() == "error"
        assert "exit code 1" in page.locator("#status").inner_text()
        save(tmp_path / "nb.js", text.replace("throw new Error('boom');", "console.log(("))
        # node's own report of a file that does not compile, as node prints it
        page.locator("#cell-after pre.stderr", has_text="SyntaxError").wait_for()
        # node's report streams in as node writes it; the cells are marked at the run's end
        page.locator("#cell-3 .head", has_text="not run").wait_for()


def test_a_table_a_tree_and_an_image_render(page: Any, tmp_path: Path) -> None:
    (tmp_path / "dot.png").write_bytes(png())
    text = NOTEBOOK.replace(
        "console.log('last', 1);",
        "rows;\n\n// %% tree\nconst tree = { m: new Map([['k', { deep: [1, 2] }]]) };\ntree;\n\n"
        "// %% image\nrequire('fs').readFileSync('dot.png');",
    )
    with _started(tmp_path, text) as s:
        page.goto(s.url)
        table = page.locator("#cell-3 table.rich")
        table.wait_for()
        assert table.locator("th").all_inner_texts() == ["name", "n"]
        assert table.locator("td").all_inner_texts() == ["'a'", "1", "'b'", "2"]
        tree = page.locator("#cell-4 .tree")
        assert "deep" not in tree.inner_text()  # folded below the first level
        tree.locator("summary", has_text="Map(1)").click()
        tree.locator("summary", has_text="{ deep: [Array] }").click()
        tree.locator("summary", has_text="[ 1, 2 ]").click()
        assert "deep" in tree.inner_text() and "1" in tree.inner_text()
        image = page.locator("#cell-5 img.rich")
        image.wait_for()
        assert image.evaluate("img => img.naturalWidth") == 2


def test_an_html_output_cannot_reach_the_page(page: Any, tmp_path: Path) -> None:
    attack = (
        "<p id=x>hello from html</p>"
        "<script>parent.document.title = 'pwned'; fetch('/n/0/edit', {method: 'POST'})</script>"
        "<img src=y onerror=\"parent.document.title = 'pwned'\">"
    )
    code = f"({{ [Symbol.for('tonic.mime')]: {{ 'text/html': {attack!r} }} }});"
    text = NOTEBOOK.replace("console.log('last', 1);", code)
    with _started(tmp_path, text) as s:
        page.goto(s.url)
        frame_el = page.locator("#cell-3 iframe.rich")
        frame_el.wait_for()
        assert frame_el.get_attribute("sandbox") == ""
        # a frame locator waits for the frame's document (and survives a re-render of
        # the cell): an element handle's frame can still be unattached just after
        inside = page.frame_locator("#cell-3 iframe.rich").locator("#x")
        assert inside.inner_text() == "hello from html"
        page.wait_for_timeout(500)  # time for a script, were one allowed to run
        assert page.title() == "nb.js · tonic"
        assert (tmp_path / "nb.js").read_text() == text


def _started(folder: Path, text: str = NOTEBOOK) -> AbstractContextManager[Served]:
    """The notebook served for a `with` block (the replay engine: the page is tested)."""
    (folder / "nb.js").write_text(text)
    return served(folder, "--engine", "replay", "nb.js")
