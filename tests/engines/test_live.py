"""tonic on a real terminal, as a user meets it: a long cell's lines arrive while it runs
(fresh and resumed), stdout and stderr keep node's order, and Ctrl-C ends tonic and its
kernel."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests import terminal
from tests.helpers import no_kernel_left, require_engine

SLOW = """// %% setup
console.log('setup');

// %% slow
for (let i = 0; i < 4; i++) {
  const t = Date.now();
  while (Date.now() - t < 300);
  console.log('tick', i);
  console.error('err', i);
}
"""


@pytest.mark.parametrize("engine", ["replay", "criu"])
def test_lines_of_a_long_cell_arrive_while_it_runs(engine: str, tmp_path: Path) -> None:
    require_engine(engine)
    nb = tmp_path / "slow.js"
    nb.write_text(SLOW)
    for edit in range(2 if engine == "criu" else 1):  # criu: fresh, then resumed
        nb.write_text(SLOW.replace("'tick', i", f"'tick', i + {edit * 10}"))
        pid, master = terminal.spawn(["run", "--engine", engine, str(nb)], tmp_path)
        lines = terminal.lines(master, b"cells ran")
        lines += terminal.lines(master, b"\0")  # to the end (the notes)
        assert terminal.status(pid) == 0
        os.close(master)
        first = terminal.at(lines, b"tick %d" % (edit * 10))
        last = terminal.at(lines, b"tick %d" % (edit * 10 + 3))
        # node prints them 0.3 s apart: shown as they come, not all when the cell ends
        assert last - first > 0.5, lines
        words = [terminal.visible(line).split(b" ")[0] for _, line in lines]
        assert [w for w in words if w in (b"tick", b"err")] == [b"tick", b"err"] * 4, lines


@pytest.mark.parametrize("engine", ["replay", "criu"])
def test_ctrl_c_ends_tonic_and_its_kernel(engine: str, tmp_path: Path) -> None:
    require_engine(engine)
    nb = tmp_path / "spin_live.js"
    nb.write_text("console.log('spinning');\nwhile (true);\n")
    pid, master = terminal.spawn(["run", "--plain", "--engine", engine, str(nb)], tmp_path)
    terminal.lines(master, b"spinning")
    os.write(master, b"\x03")  # the terminal sends SIGINT to tonic's process group
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        tree = subprocess.run(
            ["ps", "-eH", "-o", "pid,ppid,pgid,sid,stat,wchan:20,args"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        shown = b"".join(line for _, line in terminal.lines(master, b"\0", timeout=1))
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"tonic did not end on Ctrl-C; the processes:\n{tree}\nit showed {shown!r}")
    os.close(master)
    assert os.waitstatus_to_exitcode(status) in (130, -signal.SIGINT)
    assert no_kernel_left(nb)


RESIZE = """console.log('columns', process.stdout.columns);
process.stdout.on('resize', () => {
  console.log('resized', process.stdout.columns, process.stdout.rows);
  process.exit(0);
});
setTimeout(() => console.log('no resize'), 20000);
"""


def _resize(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


@pytest.mark.parametrize("engine", ["replay", "criu"])
def test_a_resize_reaches_the_notebook(engine: str, tmp_path: Path) -> None:
    """Resizing the terminal during a run: node's stdout emits 'resize' with the new
    size, as under node on that terminal."""
    require_engine(engine)
    nb = tmp_path / "resize.js"
    nb.write_text(RESIZE)
    pid, master = terminal.spawn(["run", "--plain", "--engine", engine, str(nb)], tmp_path)
    _resize(master, 24, 80)
    lines = terminal.lines(master, b"columns")
    assert b"columns 80" in [terminal.visible(line) for _, line in lines], lines
    _resize(master, 30, 120)  # the terminal sends SIGWINCH to tonic's process group
    lines = terminal.lines(master, b"resized", timeout=30)
    assert b"resized 120 30" in [terminal.visible(line) for _, line in lines], lines
    assert terminal.status(pid) == 0
    os.close(master)
