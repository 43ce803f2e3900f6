"""What node's stdout and stderr are made from tonic's (kernel/stdio.py)."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
from pathlib import Path

from tonic.kernel.stdio import FILE, MERGED, PIPE, TTY, Appended, Stdio, open_channels


def test_two_pipes_are_the_default_and_key_nothing() -> None:
    a, b = os.pipe()
    c, d = os.pipe()
    try:
        assert Stdio.like(b, d) == Stdio()
        assert Stdio().key() == ""
        # One pipe on both: one channel.
        assert Stdio.like(b, b) == Stdio(PIPE, PIPE, merged=True)
        assert Stdio.like(b, b).key() == "pipe merged"
    finally:
        for fd in (a, b, c, d):
            os.close(fd)


def test_a_file_a_terminal_and_dev_null(tmp_path: Path) -> None:
    out = os.open(tmp_path / "out.txt", os.O_WRONLY | os.O_CREAT)
    null = os.open(os.devnull, os.O_WRONLY)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        assert Stdio.like(out, null) == Stdio(FILE, PIPE)
        assert Stdio.like(out, null, files=False) == Stdio()
        assert Stdio.like(null, os.dup(null)).merged  # the same device and inode
        tty = Stdio.like(slave, out)
        assert tty == Stdio(TTY, FILE, size=(100, 24))
        assert tty.key() == "tty file 100x24"
        assert tty.pipes_only() == Stdio()
        assert Stdio.like(slave, slave).files() == set()
        assert Stdio.like(out, out).files() == {1}
    finally:
        for fd in (out, null, master, slave):
            os.close(fd)


def test_a_terminal_s_channel_has_its_size_and_no_output_processing() -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
    channels = open_channels(Stdio(TTY, TTY, merged=True, size=(97, 31)), slave, slave)
    try:
        assert channels.theirs.stderr == MERGED
        kernel = channels.theirs.stdout
        assert os.isatty(kernel)
        assert os.get_terminal_size(kernel) == os.terminal_size((97, 31))
        assert not termios.tcgetattr(kernel)[1] & termios.OPOST
        os.write(kernel, b"a\nb\n")
        assert os.read(channels.ours.stdout, 100) == b"a\nb\n"  # no \r added
    finally:
        for fd in (master, slave, channels.ours.stdout, channels.theirs.stdout):
            os.close(fd)
        for fd in (channels.ours.cmd, channels.ours.events, channels.theirs.cmd):
            os.close(fd)
        os.close(channels.theirs.events)


def test_what_was_appended_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_bytes(b"before\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    appended = Appended(fd)
    try:
        assert appended.new() == b""
        os.write(fd, b"one\n")
        os.write(os.dup(fd), b"two\n")  # another fd of the same open file
        assert appended.new() == b"one\ntwo\n"
        assert appended.new() == b""
        appended.rewind()
        assert path.read_bytes() == b"before\n"
    finally:
        appended.close()
        os.close(fd)
