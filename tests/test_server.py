"""The warm server (tonic.launch, tonic.server): a command served by a forked worker
behaves as one run in its own process: node's bytes, exit codes, signals, stdin, cwd,
environment; servers are per context, stop on request and when idle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import gone as _gone
from tests.helpers import no_kernel_left, node, require_engine, tonic

TONIC = [sys.executable, "-m", "tonic"]


def _env(runtime: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, TONIC_RUNTIME_DIR=str(runtime), **extra)


def _status(env: dict[str, str]) -> dict[str, str]:
    """The fields of the server this context would use ({} if none)."""
    out = tonic("server", "status", env=env)
    assert out.code == 0, out.describe()
    for line in out.stdout.decode().splitlines():
        if line.startswith("server pid") and "(this tonic)" in line:
            pid = line.split()[2]
            served = line.split(": ", 1)[1].split()[0]
            return {"pid": pid, "served": served}
    return {}


CASES = {
    "output and exit code": (
        "console.log('out'); console.error('err');\n\nprocess.exitCode = 3;\n",
        b"",
    ),
    "uncaught error": ("console.log('before');\n\nnull.x;\n", b""),
    "process.exit mid-run": ("console.log(1);\n\nprocess.exit(7);\n\nconsole.log(2);\n", b""),
    "cwd, argv, env": (
        "console.log(process.cwd(), process.argv.slice(2), process.env.TONIC_TEST_VALUE);\n",
        b"",
    ),
    "stdin": (
        "const data = require('fs').readFileSync(0, 'utf8');\n\n"
        "console.log([...data].reverse().join(''));\n",
        b"hello\n",
    ),
    "signal": ("console.log('x');\n\nprocess.kill(process.pid, 'SIGTERM');\n", b""),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_served_equals_node(tmp_path: Path, served: dict[str, str], name: str) -> None:
    source, stdin = CASES[name]
    path = tmp_path / "nb.js"
    path.write_text(source)
    env = dict(served, TONIC_TEST_VALUE="v1")
    before = int(_status(env)["served"])
    expected = node(path, "a", "b c", cwd=tmp_path, env=env, stdin=stdin)
    got = tonic(
        "run", "--plain", "--engine", "replay", str(path), "--", "a", "b c",
        cwd=tmp_path, env=env, stdin=stdin,
    )  # fmt: skip
    assert (got.stdout, got.stderr, got.code) == (
        expected.stdout,
        expected.stderr,
        expected.code,
    ), got.describe()
    assert int(_status(env)["served"]) == before + 1, "the server did not run the command"


def test_resume_through_the_server(tmp_path: Path, served: dict[str, str]) -> None:
    require_engine("criu")
    path = tmp_path / "nb.js"
    cells = (
        "// %% a\nconst r = Math.random();\nconsole.log('a');\n\n// %% b\nconsole.log(r < 2, {});\n"
    )
    path.write_text(cells)
    first = tonic("run", "--json", str(path), cwd=tmp_path, env=served)
    assert first.code == 0, first.describe()
    path.write_text(cells.replace("{}", "{ edited: 1 }"))
    got = tonic("run", "--json", str(path), cwd=tmp_path, env=served)
    assert got.code == 0, got.describe()
    import json

    assert json.loads(got.stdout)["restored"] == 1
    plain = tonic("run", "--plain", str(path), cwd=tmp_path, env=served)
    assert (plain.stdout, plain.stderr, plain.code) == (
        node(path).stdout,
        node(path).stderr,
        0,
    )


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_client_signals_end_the_worker(tmp_path: Path, served: dict[str, str], how: str) -> None:
    """SIGTERM and Ctrl-C reach the worker (exit codes as without a server); a client
    killed outright makes the server end its worker. The kernel goes with it."""
    require_engine("criu")
    path = tmp_path / f"spin-{how}.js"
    path.write_text("// %% a\nconsole.log('started');\n\n// %% b\nwhile (true) {}\n")
    proc = subprocess.Popen(
        [*TONIC, "run", "--plain", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=served,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    time.sleep(0.3)
    before = int(_status(served)["served"])
    proc.send_signal(getattr(signal, how))
    code = proc.wait(timeout=30)
    expected = {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -signal.SIGKILL}[how]
    assert code == expected
    assert no_kernel_left(path), "a kernel still runs the notebook"
    assert int(_status(served)["served"]) == before, "the command did not run on the server"
    assert proc.stderr is not None
    proc.stderr.close()
    proc.stdout.close()


def test_other_context_other_server(tmp_path: Path, served: dict[str, str]) -> None:
    """A client whose locale (or PYTHON* variables, limits, cgroup...) differs from the
    server's is not served by it; with TONIC_SERVER=off nothing is."""
    path = tmp_path / "nb.js"
    path.write_text("console.log('x');\n")
    before = int(_status(served)["served"])
    for env in (dict(served, LC_ALL="C"), dict(served, TONIC_SERVER="off")):
        got = tonic("run", "--plain", "-e", "replay", str(path), env=env)
        assert (got.stdout, got.code) == (b"x\n", 0), got.describe()
    assert int(_status(served)["served"]) == before


def test_closed_stdio_runs_in_process(tmp_path: Path, served: dict[str, str]) -> None:
    path = tmp_path / "nb.js"
    path.write_text("console.log('x');\n")
    before = int(_status(served)["served"])
    proc = subprocess.run(
        [*TONIC, "run", "--plain", "-e", "replay", str(path)],
        capture_output=True,
        env=served,
        preexec_fn=lambda: os.close(0),
        check=False,
    )
    assert (proc.stdout, proc.returncode) == (b"x\n", 0), proc.stderr
    assert int(_status(served)["served"]) == before


def test_auto_start_and_idle_exit(tmp_path: Path) -> None:
    """TONIC_SERVER=auto: the first command runs itself and starts a server, the next one
    is served; the server exits by itself after TONIC_SERVER_IDLE seconds."""
    runtime = tmp_path / "runtime"
    env = _env(runtime, TONIC_SERVER="auto", TONIC_SERVER_IDLE="2", CI="")
    path = tmp_path / "nb.js"
    path.write_text("console.log('x');\n")
    first = tonic("run", "--plain", "-e", "replay", str(path), env=env)
    assert (first.stdout, first.code) == (b"x\n", 0), first.describe()
    assert oct(runtime.stat().st_mode & 0o777) == oct(0o700)
    deadline = time.monotonic() + 20
    status: dict[str, str] = {}
    while not status and time.monotonic() < deadline:
        time.sleep(0.1)
        status = _status(env)
    assert status, "no server started"
    second = tonic("run", "--plain", "-e", "replay", str(path), env=env)
    assert (second.stdout, second.code) == (b"x\n", 0), second.describe()
    assert _status(env)["served"] == "1"
    assert _gone(int(status["pid"]), within=20), "the idle server did not exit"
    assert not list(runtime.glob("*.sock"))
    # What a server leaves (its lock file) goes with the next `tonic server stop`.
    assert tonic("server", "stop", env=env).code == 0
    assert list(runtime.iterdir()) == []


def test_runtime_dir_not_private(tmp_path: Path) -> None:
    """A socket folder others can use is not used: commands run in-process, quietly."""
    runtime = tmp_path / "shared"
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    env = _env(runtime, TONIC_SERVER="auto", CI="")
    path = tmp_path / "nb.js"
    path.write_text("console.log('x');\n")
    got = tonic("run", "--plain", "-e", "replay", str(path), env=env)
    assert (got.stdout, got.stderr, got.code) == (b"x\n", b"", 0)
    assert list(runtime.iterdir()) == []
    status = tonic("server", "status", env=env)
    assert status.code == 2 and b"TONIC_RUNTIME_DIR" in status.stderr, status.describe()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _catches(pid: int, signum: int, within: float = 10.0) -> bool:
    """Whether process `pid` has (or gets, within a while) a handler for `signum`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:") and int(line.split()[1], 16) >> (signum - 1) & 1:
                return True
        time.sleep(0.01)
    return False


def _wait_state(pid: int, want: set[str], within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    state = _state(pid)
    while state not in want and time.monotonic() < deadline:
        time.sleep(0.02)
        state = _state(pid)
    return state


def test_ctrl_z_stops_and_continues(tmp_path: Path, served: dict[str, str]) -> None:
    """SIGTSTP to the client stops the worker and the client; SIGCONT continues both, and
    the output is still node's."""
    path = tmp_path / "ticks.js"
    path.write_text(
        "console.log('started');\n\n"
        "let n = 0;\n"
        "const t = setInterval(() => { console.log(++n); if (n === 30) clearInterval(t); }, 20);\n"
    )
    server = int(_status(served)["pid"])
    proc = subprocess.Popen(
        [*TONIC, "run", "--plain", "-e", "replay", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=served,
        # A job of a shell's: a process group of its own, not orphaned (the kernel
        # ignores SIGTSTP's stop in an orphaned one, as it is in some CI sessions).
        process_group=0,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"started\n"
    assert _catches(proc.pid, signal.SIGTSTP), "the client did not take over Ctrl-Z"
    children = Path(f"/proc/{server}/task/{server}/children").read_text().split()
    assert len(children) == 1, children
    worker = int(children[0])
    proc.send_signal(signal.SIGTSTP)
    assert _wait_state(proc.pid, {"T"}) == "T"
    assert _wait_state(worker, {"T"}) == "T"
    proc.send_signal(signal.SIGCONT)
    assert _wait_state(worker, {"R", "S", "Z", "gone"}) != "T"
    rest, err = proc.communicate(timeout=30)
    expected = node(path)
    assert (b"started\n" + rest, err, proc.returncode) == (
        expected.stdout,
        expected.stderr,
        expected.code,
    )


def test_doctor_says_how_it_started(served: dict[str, str]) -> None:
    server = _status(served)["pid"]
    got = tonic("doctor", env=served)
    assert f"ran on the warm tonic server (pid {server})" in got.stdout.decode(), got.describe()
    got = tonic("doctor", env=dict(served, TONIC_SERVER="off"))
    assert "imports tonic itself (TONIC_SERVER=off)" in got.stdout.decode(), got.describe()


def test_server_killed_mid_command(tmp_path: Path) -> None:
    """A server killed outright: its worker ends (and removes its kernel), and the client
    says so in one line and exits 1."""
    require_engine("criu")
    runtime = tmp_path / "runtime"
    env = _env(runtime, TONIC_SERVER="on")
    out = tonic("server", "start", env=env)
    assert out.code == 0, out.describe()
    server = int(out.stdout.split()[-1])
    path = tmp_path / "spin.js"
    path.write_text("// %% a\nconsole.log('started');\n\n// %% b\nwhile (true) {}\n")
    proc = subprocess.Popen(
        [*TONIC, "run", "--plain", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"started\n"
    os.kill(server, signal.SIGKILL)
    assert _gone(server)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.endswith(b"tonic: error: the tonic server stopped during the command\n"), err
    assert no_kernel_left(path), "a kernel still runs the notebook"


def test_auto_does_not_start_a_server_under_ci(tmp_path: Path) -> None:
    """With $CI set, `auto` runs commands in their own process and leaves no server."""
    runtime = tmp_path / "runtime"
    env = _env(runtime, TONIC_SERVER="auto", CI="true")
    path = tmp_path / "nb.js"
    path.write_text("console.log('x');\n")
    for _ in range(2):
        got = tonic("run", "--plain", "-e", "replay", str(path), env=env)
        assert (got.stdout, got.code) == (b"x\n", 0), got.describe()
    time.sleep(0.5)
    assert not list(runtime.glob("*.sock"))
    assert b"not started under CI" in tonic("doctor", env=env).stdout


def test_two_starts_at_once_share_one_server(tmp_path: Path) -> None:
    """`tonic server start` racing another start (or an auto-start) of the same server:
    the one that loses waits for the winner to answer, instead of failing."""
    runtime = tmp_path / "runtime"
    env = _env(runtime, TONIC_SERVER="on")
    starts = [
        subprocess.Popen(
            [*TONIC, "server", "start"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in starts]
    try:
        assert [p.returncode for p in starts] == [0, 0], outs
        pids = {out.split()[-1] for out, _ in outs}
        assert len(pids) == 1, outs
    finally:
        out = tonic("server", "stop", env=env)
        assert out.code == 0, out.describe()


@pytest.mark.parametrize("argv", [(), ("--help",), ("run", "--help"), ("cache", "-h")])
def test_help_starts_no_server(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """`auto` starts a server only for a command that runs: asking for help starts none."""
    runtime = tmp_path / "runtime"
    env = _env(runtime, TONIC_SERVER="auto", CI="")
    tonic(*argv, env=env)
    time.sleep(0.5)
    assert not list(runtime.glob("*.sock"))


def test_a_runtime_dir_with_a_long_path_serves(tmp_path: Path) -> None:
    """A socket's address holds 108 bytes: a server whose runtime folder's path is longer
    still listens there, and commands reach it."""
    runtime = tmp_path / ("long-" * 20) / "runtime"
    runtime.mkdir(parents=True, mode=0o700)
    env = _env(runtime, TONIC_SERVER="on")
    started = tonic("server", "start", env=env)
    assert started.code == 0, started.describe()
    try:
        path = tmp_path / "nb.js"
        path.write_text("console.log('x');\n")
        got = tonic("run", "--plain", "-e", "replay", str(path), env=env)
        assert (got.stdout, got.stderr, got.code) == (b"x\n", b"", 0)
        assert _status(env)["served"] == "1"
    finally:
        assert tonic("server", "stop", env=env).code == 0
