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

from tests.helpers import CONFORMANCE, require_engine, served_count

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


def _sh(command: str, cwd: Path, env: dict[str, str] | None = None, code: int = 0) -> bytes:
    """What `command` printed on its stdout (the shell does the redirections); it must
    exit with `code`."""
    done = subprocess.run(
        ["sh", "-c", command],
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env=env,
    )
    assert done.returncode == code, done.stderr.decode(errors="replace")
    return done.stdout


def _write(path: Path, text: str, last: str) -> None:
    path.write_text(text.replace("{last}", last))


def _resumes(nb: Path, engine: str, redirect: str, env: dict[str, str] | None = None) -> bool:
    """Whether `tonic why`, with the same redirections as the run, says the next run
    restores cells (run with stdout to a file: the answer is read from there)."""
    answer = nb.parent.parent / "why.txt"
    why = _tonic("why", "--plain", "-e", engine, nb.name)
    _sh(f"{why} {redirect.replace('OUT', str(answer))}", nb.parent, env)
    return "restores cells" in answer.read_text()


def _engine(name: str, request: pytest.FixtureRequest) -> tuple[str, dict[str, str] | None]:
    """`criu-served`: the criu engine, each command run by the warm server (which gets
    the client's stdout and stderr)."""
    env = None
    if name == "criu-served":
        name, env = "criu", request.getfixturevalue("served")
    require_engine(name)
    return name, env


@pytest.mark.parametrize("engine", [*ENGINES, "criu-served"])
@pytest.mark.parametrize("into", ["pipe", "file"])
def test_order_kept_when_stdout_and_stderr_are_one(
    engine: str, into: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    engine, env = _engine(engine, request)
    # The outputs stay out of the notebook's folder (the docker engine's key holds it).
    nb = tmp_path / "nb" / "nb.js"
    nb.parent.mkdir()
    redirect = "> OUT 2>&1" if into == "file" else "2>&1 | cat > OUT"
    for run, last in enumerate(("one", "two", "two")):  # fresh, resumed, unchanged (stored)
        _write(nb, ORDER, last)
        if run == 1 and engine != "replay":
            assert _resumes(nb, engine, redirect, env), "the edited notebook would not resume"
        node = redirect.replace("OUT", "../node.txt")
        expected = _sh(f"node nb.js {node}; cat ../node.txt", nb.parent)
        command = _tonic("run", "--plain", "-e", engine, "nb.js")
        mine = redirect.replace("OUT", "../tonic.txt")
        got = _sh(f"{command} {mine}; cat ../tonic.txt", nb.parent, env)
        assert got == expected


@pytest.mark.parametrize("engine", ["replay", "criu", "criu-served"])
def test_a_file_on_stdout_gets_all_before_exit(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`process.stdout.write(big); process.exit()` into a file: node writes it all (a file
    is written synchronously), so must tonic, fresh, resumed and from the store."""
    engine, env = _engine(engine, request)
    nb = tmp_path / "nb" / "nb.js"
    nb.parent.mkdir()
    for run, last in enumerate(("x", "y", "y")):
        _write(nb, BIG, last)
        if run == 1 and engine == "criu":
            assert _resumes(nb, engine, "> OUT", env)
        _sh(_tonic("run", "--plain", "-e", engine, "nb.js") + " > ../out.txt", nb.parent, env)
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


def _pty_run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, cols: int = 97, rows: int = 31
) -> tuple[bytes, int]:
    """Everything `argv` wrote to a pseudo-terminal of that size (stdout and stderr), and
    its exit status."""
    # node colours what it logs on a terminal that says it can: CI has no TERM, and node
    # takes $CI for a terminal without colours
    env = {**(env if env is not None else os.environ), "TERM": "xterm-256color"}
    env.pop("CI", None)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
    )
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
    return out, proc.wait(timeout=120)


def _under_pty(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, cols: int = 97
) -> bytes:
    """What `argv` wrote to a pseudo-terminal; it must succeed."""
    out, status = _pty_run(argv, cwd, env, cols)
    assert status == 0, out.decode(errors="replace")
    return out


@pytest.mark.parametrize("engine", ["replay", "criu", "criu-served"])
def test_a_terminal_is_a_terminal_to_the_notebook(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Under a pseudo-terminal, `tonic run --plain` prints node's bytes: isTTY, its
    columns, colours, and \\r\\n from the terminal's own line discipline; fresh, restored
    into a new terminal (criu) and from the store. The view shows the same output."""
    engine, env = _engine(engine, request)
    before = served_count(env) if env else 0
    nb = tmp_path / "nb.js"
    tonic = [sys.executable, "-m", "tonic"]
    for run, last in enumerate(("one", "two", "two")):
        _write(nb, TTY, last)
        if run == 1 and engine == "criu":
            why = _under_pty([*tonic, "why", "--plain", "-e", engine, "nb.js"], tmp_path, env)
            assert b"restores cells" in why, why
        expected = _under_pty(["node", "nb.js"], tmp_path)
        assert b"\x1b[33mtrue\x1b[39m \x1b[33mtrue\x1b[39m \x1b[33m97" in expected
        got = _under_pty([*tonic, "run", "--plain", "-e", engine, "nb.js"], tmp_path, env)
        assert got == expected
    view = _under_pty([*tonic, "run", "-e", engine, "nb.js"], tmp_path, env)
    for line in expected.split(b"\r\n"):
        assert line in view
    if engine == "criu":
        # A snapshot with a terminal is not for a run whose stdout is a pipe, nor for a
        # terminal of another size.
        why = _sh(_tonic("why", "-e", engine, "nb.js") + " 2>&1 | cat", tmp_path, env)
        assert b"different stdio" in why
        other = _under_pty([*tonic, "why", "-e", engine, "nb.js"], tmp_path, env, cols=60)
        assert b"different stdio" in other
    if env:
        assert served_count(env) >= before + 4, "the server did not run the commands"


def test_the_view_into_a_file_draws_node_s_output_once(tmp_path: Path) -> None:
    """Only --plain lets node write tonic's file itself: the view draws the output."""
    nb = tmp_path / "nb.js"
    _write(nb, ORDER, "last line")
    _sh(_tonic("run", "-e", "replay", "nb.js") + " > out.txt 2>&1", tmp_path)
    text = (tmp_path / "out.txt").read_text()
    assert text.count("last line") == 1
    assert "✓ [1]" in text


@pytest.mark.parametrize("redirect", ["> ../out.txt", "> ../out.txt 2>&1"])
def test_a_continued_run_that_fails_takes_back_what_it_wrote(redirect: str, tmp_path: Path) -> None:
    """An uncaught error after a resume runs the notebook again afresh (node's exact
    report): what the continued run wrote to the file is taken back first."""
    require_engine("criu")
    nb = tmp_path / "nb" / "nb.js"
    nb.parent.mkdir()
    command = _tonic("run", "--plain", "-e", "criu", "nb.js")
    _write(nb, BIG.replace("3e6", "3"), "x")
    _sh(f"{command} {redirect}", nb.parent)
    nb.write_text(nb.read_text().replace("process.exit(0)", "null.x"))
    assert _resumes(nb, "criu", redirect.replace("../out.txt", "OUT"))
    _sh(f"{command} {redirect}", nb.parent, code=1)
    mine = (tmp_path / "out.txt").read_bytes()
    _sh(f"node nb.js {redirect}", nb.parent, code=1)
    assert mine == (tmp_path / "out.txt").read_bytes()


# Conformance cases about output, exits and errors (all of them pass this way too).
STDIO_CASES = sorted(
    p for n in ("15", "16", "17", "38", "39", "40") for p in CONFORMANCE.glob(f"{n}_*")
)


@pytest.mark.parametrize("path", STDIO_CASES, ids=lambda p: p.name)
@pytest.mark.parametrize("engine", ["replay", "criu"])
@pytest.mark.parametrize("into", ["terminal", "file"])
def test_conformance_on_a_terminal_and_into_a_file(
    path: Path, engine: str, into: str, tmp_path: Path
) -> None:
    """node's exact bytes and exit code on a terminal and in a file (`> f 2>&1`): fresh
    and (criu) again, unchanged, from the store."""
    require_engine(engine)
    tonic = [sys.executable, "-m", "tonic", "run", "--plain", "-e", engine, str(path)]
    if into == "terminal":
        expected = _pty_run(["node", str(path)], path.parent)
        for _ in range(2 if engine == "criu" else 1):
            assert _pty_run(tonic, path.parent) == expected
        return
    out = tmp_path / "out.txt"
    node = f"node {shlex.quote(str(path))} > {out} 2>&1; echo $?"
    expected = _sh(node, path.parent), out.read_bytes()
    command = " ".join(shlex.quote(a) for a in tonic)
    for _ in range(2 if engine == "criu" else 1):
        assert (_sh(f"{command} > {out} 2>&1; echo $?", path.parent), out.read_bytes()) == expected
