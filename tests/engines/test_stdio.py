"""The notebook's stdout and stderr are what node's would be: one channel when tonic's are
one (`2>&1`), a terminal when tonic's is one, the very file when tonic's is a file; fresh,
resumed after an edit (criu) and shown again from the store."""

from __future__ import annotations

import fcntl
import os
import shlex
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.helpers import require_engine

ENGINES = ["replay", "criu", "docker"]

# Alternating streams within a cell and across cells: two pipes read by tonic lose this.
ORDER = """\
for (let i = 0; i < 40; i++) { console.log('out', i); console.error('err', i); }

console.error('second cell'); console.log('{last}');
"""

TTY = """\
console.log(process.stdout.isTTY, process.stderr.isTTY, process.stdout.columns);
console.log({ a: 1, b: 'two', c: [true, null], d: new Map([[1, 2]]) });

console.error('depth', process.stdout.getColorDepth(), process.stdout.hasColors());
console.log(require('util').inspect({ deep: { er: [1, 'x'] } }, { colors: true }));

process.stdout.write('{last}');
"""

BIG = """\
console.log('first');

process.stdout.write('{last}'.repeat(3e6)); process.exit(0)
"""


def _tonic(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "tonic", *args])


def _sh(command: str, cwd: Path) -> bytes:
    """What `command` printed on its stdout (the shell does the redirections)."""
    done = subprocess.run(
        ["sh", "-c", command], cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def _write(path: Path, text: str, last: str) -> None:
    path.write_text(text.replace("{last}", last))


def _resumes(nb: Path, engine: str, redirect: str) -> bool:
    """Whether `tonic why`, with the same redirections as the run, says the next run
    restores cells (run with stdout to a file: the answer is read from there)."""
    answer = nb.parent / "why.txt"
    _sh(f"{_tonic('why', '-e', engine, nb.name)} {redirect.replace('OUT', answer.name)}", nb.parent)
    return "restores cells" in answer.read_text()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("into", ["pipe", "file"])
def test_order_kept_when_stdout_and_stderr_are_one(engine: str, into: str, tmp_path: Path) -> None:
    require_engine(engine)
    nb = tmp_path / "nb.js"
    redirect = "> OUT 2>&1" if into == "file" else "2>&1 | cat > OUT"
    for last in ("one", "two", "two"):  # fresh, resumed after an edit, unchanged (stored)
        _write(nb, ORDER, last)
        if last == "two" and engine != "replay" and not (tmp_path / "stored").exists():
            assert _resumes(nb, engine, redirect), "the edited notebook would not resume"
            (tmp_path / "stored").touch()
        expected = _sh(f"node nb.js {redirect.replace('OUT', 'node.txt')}; cat node.txt", tmp_path)
        command = _tonic("run", "--plain", "-e", engine, "nb.js")
        got = _sh(f"{command} {redirect.replace('OUT', 'tonic.txt')}; cat tonic.txt", tmp_path)
        assert got == expected


@pytest.mark.parametrize("engine", ["replay", "criu"])
def test_a_file_on_stdout_gets_all_before_exit(engine: str, tmp_path: Path) -> None:
    """`process.stdout.write(big); process.exit()` into a file: node writes it all (a file
    is written synchronously), so must tonic, fresh, resumed and from the store."""
    require_engine(engine)
    nb = tmp_path / "nb.js"
    for last in ("x", "y", "y"):
        _write(nb, BIG, last)
        if last == "y" and engine == "criu" and not (tmp_path / "stored").exists():
            assert _resumes(nb, engine, "> OUT")
            (tmp_path / "stored").touch()
        _sh(_tonic("run", "--plain", "-e", engine, "nb.js") + " > out.txt", tmp_path)
        data = (tmp_path / "out.txt").read_bytes()
        assert data == b"first\n" + last.encode() * 3_000_000


def test_a_file_opened_to_append_gets_only_the_run_s_output(tmp_path: Path) -> None:
    require_engine("criu")
    nb = tmp_path / "nb.js"
    for last in ("x", "y"):
        _write(nb, BIG.replace("3e6", "3"), last)
        (tmp_path / "out.txt").write_text("before\n")
        _sh(_tonic("run", "--plain", "-e", "criu", "nb.js") + " >> out.txt", tmp_path)
        assert (tmp_path / "out.txt").read_text() == f"before\nfirst\n{last * 3}"


def _under_pty(argv: list[str], cwd: Path, cols: int = 97, rows: int = 31) -> bytes:
    """Everything `argv` wrote to a pseudo-terminal of that size (stdout and stderr)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: no slave open any more
            break
        if not data:
            break
        out += data
    os.close(master)
    assert proc.wait(timeout=120) == 0, out.decode(errors="replace")
    return out


@pytest.mark.parametrize("engine", ["replay", "criu"])
def test_a_terminal_is_a_terminal_to_the_notebook(engine: str, tmp_path: Path) -> None:
    """Under a pseudo-terminal, `tonic run --plain` prints node's bytes: isTTY, its
    columns, colours, and \\r\\n from the terminal's own line discipline; fresh, restored
    into a new terminal (criu) and from the store. The view shows the same output."""
    require_engine(engine)
    nb = tmp_path / "nb.js"
    tonic = [sys.executable, "-m", "tonic"]
    for last in ("one", "two", "two"):
        _write(nb, TTY, last)
        if last == "two" and engine == "criu" and not (tmp_path / "stored").exists():
            why = _under_pty([*tonic, "why", "-e", engine, "nb.js"], tmp_path)
            assert b"restores cells" in why, why
            (tmp_path / "stored").touch()
        expected = _under_pty(["node", "nb.js"], tmp_path)
        assert b"\x1b[33mtrue\x1b[39m \x1b[33mtrue\x1b[39m \x1b[33m97" in expected
        got = _under_pty([*tonic, "run", "--plain", "-e", engine, "nb.js"], tmp_path)
        assert got == expected
    view = _under_pty([*tonic, "run", "-e", engine, "nb.js"], tmp_path)
    for line in expected.split(b"\r\n"):
        assert line in view
    if engine == "criu":
        # A snapshot with a terminal is not for a run whose stdout is a pipe, nor for a
        # terminal of another size.
        why = _sh(_tonic("why", "-e", engine, "nb.js") + " 2>&1 | cat", tmp_path)
        assert b"different stdio" in why
        other = _under_pty([*tonic, "why", "-e", engine, "nb.js"], tmp_path, cols=60)
        assert b"different stdio" in other
