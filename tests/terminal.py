"""tonic on a real pseudo-terminal, as a user's shell starts it: what the terminal shows,
line by line with arrival times."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def spawn(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, int]:
    """(pid, the master of its terminal): `python -m tonic ARGS` on a new pty (with
    `env` added to the environment)."""
    pid, master = pty.fork()
    if pid == 0:  # the child: tonic on the terminal, in the test's folder
        os.chdir(cwd)
        os.environ.update(env or {})
        os.environ["TERM"] = "xterm-256color"  # a terminal that can show colours
        os.environ.pop("CI", None)  # (node takes $CI for a terminal without colours)
        # As a user's shell starts it: a job started in the background by a script has
        # SIGINT ignored, which node and tonic would inherit (Ctrl-C would end neither).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execv(sys.executable, [sys.executable, "-m", "tonic", *args])
    return pid, master


def lines(master: int, until: bytes, timeout: float = 60.0) -> list[tuple[float, bytes]]:
    """(arrival time, line) of what the terminal shows, until a line holding `until`."""
    got: list[tuple[float, bytes]] = []
    rest = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        rest += data
        *done, rest = rest.split(b"\n")
        now = time.monotonic()
        got.extend((now, line) for line in done)
        if any(until in line for _, line in got):
            break
    return got


def interrupt(pid: int, master: int, within: float = 20.0) -> int | None:
    """Ctrl-C on the terminal, then its exit status; None when it did not end `within`
    seconds (it is then killed). The terminal is closed either way."""
    os.write(master, b"\x03")
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    finally:
        os.close(master)


def status(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def visible(line: bytes) -> bytes:
    """What stays of a terminal line: the last of its carriage-return parts, uncoloured
    (the status line is redrawn before each output line)."""
    parts = [ANSI.sub(b"", part).strip() for part in line.split(b"\r")]
    return next((p for p in reversed(parts) if p), b"")


def at(lines: list[tuple[float, bytes]], text: bytes) -> float:
    return next(t for t, line in lines if visible(line) == text)
