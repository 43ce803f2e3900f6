"""`tonic serve` over plain HTTP: the token's rules, the edit's conflict rule and its
bytes, several notebooks, and the command's own errors and Ctrl-C."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests import terminal
from tests.helpers import no_kernel_left, require_engine, tonic
from tests.serving import Served, request
from tonic.live.edit import replaced
from tonic.notebook.cells import parse

NOTEBOOK = "// %% one\nconsole.log('one');\n\n// %% two\nconsole.log('two');\n"


def start(folder: Path, *names: str, engine: str = "replay") -> Served:
    for name in names or ("nb.js",):
        if not (folder / name).exists():
            (folder / name).write_text(NOTEBOOK)
    return Served(folder, "--engine", engine, *(names or ("nb.js",)))


EDITS = [
    # (file, cell, new code, file after)
    (NOTEBOOK, 2, "console.log(2);", NOTEBOOK.replace("console.log('two');", "console.log(2);")),
    (
        "// %% a\n\nlet x = 1;\n\n\n// %% b\nx\n",
        1,
        "let x = 2;\nlet y = 3;\n",
        "// %% a\n\nlet x = 2;\nlet y = 3;\n\n\n// %% b\nx\n",
    ),
    ("let a = 1;\n\nlet b = 2;\n", 2, "let b = 3;", "let a = 1;\n\nlet b = 3;\n"),
    ("// %% é\nconst s = 'ü';\n", 1, "const s = '∑';", "// %% é\nconst s = '∑';\n"),
]


@pytest.mark.parametrize(("text", "index", "code", "after"), EDITS)
def test_an_edit_replaces_the_cells_code_alone(
    text: str, index: int, code: str, after: str
) -> None:
    nb = parse(text.encode())
    cell = next(c for c in nb.cells if c.index == index)
    assert replaced(text.encode(), cell, code).decode() == after


def test_the_token_guards_every_route(tmp_path: Path) -> None:
    s = start(tmp_path)
    try:
        for path in ("/", "/n/0", "/n/0/events"):
            assert s.get(path)[0] == 403, path
        # The page a browser loads before the first run began has no version yet (its
        # event stream sends one): wait for a page that has it.
        deadline = time.monotonic() + 30
        version = ""
        while not version and time.monotonic() < deadline:
            status, page = s.get(f"/n/0?token={s.token}")
            assert status == 200 and "nb.js" in page
            version = page.split('data-version="', 1)[1].split('"', 1)[0]
            time.sleep(0.05 if not version else 0)
        body = json.dumps({"cell": 2, "code": "1", "version": version}).encode()
        url = f"{s.base}/n/0/edit"
        # a cookie is not enough to edit (another site's form would send it): the header is
        cookie = {"Cookie": f"tonic-token={s.token}", "Content-Type": "application/json"}
        assert request(url, body, cookie)[0] == 403
        assert s.get("/n/0", {"Host": "evil.example:80"})[0] == 400  # no DNS rebinding
        assert (tmp_path / "nb.js").read_text() == NOTEBOOK
        header = {"X-Tonic-Token": s.token, "Content-Type": "application/json"}
        assert request(url, b"{}", header)[0] == 400
        stale = json.dumps({"cell": 2, "code": "1", "version": "0" * 64}).encode()
        status, said = request(url, stale, header)
        assert status == 409 and "changed since the page showed it" in said
        assert (tmp_path / "nb.js").read_text() == NOTEBOOK
        assert request(url, body, header) == (200, '{"saved":true,"changed":true}')
        assert (tmp_path / "nb.js").read_text() == NOTEBOOK.replace("console.log('two');", "1")
        assert any(b"nb.js changed" in line for line in s.lines(b"nb.js changed"))
    finally:
        assert s.stop() == 0


def test_several_notebooks_have_a_page_each(tmp_path: Path) -> None:
    (tmp_path / "b.js").write_text("console.log('bee');\n")
    s = start(tmp_path, "a.js", "b.js")
    try:
        status, index = s.get(f"/?token={s.token}")
        assert status == 200 and 'href="/n/0">a.js' in index and 'href="/n/1">b.js' in index
        s.lines(b"b.js \xc2\xb7")
        status, page = s.get(f"/n/1?token={s.token}")
        assert status == 200 and "bee" in page
        assert s.get(f"/n/2?token={s.token}")[0] == 404
    finally:
        assert s.stop() == 0


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "nb.js").write_text(NOTEBOOK)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        out = tonic("serve", "--port", str(port), "nb.js", cwd=tmp_path)
    finally:
        taken.close()
    assert out.code != 0 and "Traceback" not in out.stderr.decode()
    assert out.stderr.decode().strip() == (
        f"tonic: error: port {port} is in use; choose another (--port N), or --port 0 for a "
        "free one"
    )


def test_a_missing_notebook_is_one_line(tmp_path: Path) -> None:
    out = tonic("serve", "--port", "0", "missing.js", cwd=tmp_path)
    assert out.code != 0 and out.stderr.decode().strip() == "tonic: error: missing.js: no such file"


def test_ctrl_c_during_a_run_leaves_nothing(tmp_path: Path) -> None:
    require_engine("criu")
    (tmp_path / "nb.js").write_text(
        "console.log('start');\n\n// %% slow\nsetInterval(() => {}, 1000); while (true);\n"
    )
    s = Served(tmp_path, "--engine", "criu", "nb.js")
    assert s.stop() == 0
    assert no_kernel_left(tmp_path / "nb.js")


def test_open_serves_on_a_free_port_and_says_when_no_browser_can_open(tmp_path: Path) -> None:
    (tmp_path / "nb.js").write_text(NOTEBOOK)
    pid, master = terminal.spawn(["open", "--engine", "replay", "nb.js"], tmp_path, {"DISPLAY": ""})
    try:
        seen = [terminal.visible(line) for _, line in terminal.lines(master, b"nb.js \xc2\xb7")]
        assert any(b"/?token=" in line for line in seen), seen
        assert b"no browser could be opened here: open the URL above" in seen, seen
    finally:
        assert terminal.interrupt(pid, master) == 0
