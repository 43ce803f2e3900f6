"""What the notebook's stdout and stderr are, and the channels that make them so.

node behaves after what its fds 1 and 2 are (a terminal: colours, columns, blocking
writes; a file: synchronous writes; a pipe: asynchronous ones), so the kernel gets on
them what `node FILE` would have had, as far as tonic can capture it:

- one channel on both when tonic's own stdout and stderr are one file, pipe or terminal
  (the same device and inode): their order is node's (it is all recorded as stdout);
- a pseudo-terminal when tonic's is a terminal: tonic holds the master and relays what
  it reads to the terminal. The slave has the terminal's size and modes, but no output
  processing (OPOST): the real terminal does that to the relayed bytes, once;
- the very file when tonic's is a regular file: node writes it itself (synchronously,
  all of it before `process.exit`), and tonic reads back what was appended;
- else a pipe that tonic reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import termios
from dataclasses import dataclass

from tonic.kernel.pipes import Pipes

PIPE, TTY, FILE = "pipe", "tty", "file"
MERGED = -1  # the kernel's stderr in a Pipes: the same channel as its stdout


def _kind(fd: int, files: bool) -> str:
    try:
        st = os.fstat(fd)
    except OSError:
        return PIPE
    if stat.S_ISREG(st.st_mode):
        return FILE if files else PIPE
    return TTY if os.isatty(fd) else PIPE


def _same(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _size(fd: int) -> tuple[int, int] | None:
    """A terminal's (columns, rows)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.columns, size.lines


@dataclass(frozen=True)
class Stdio:
    """What the kernel's fds 1 and 2 are: a pipe, a terminal or a file each, or one
    channel on both (`merged`); `size`: the terminal's (columns, rows)."""

    stdout: str = PIPE
    stderr: str = PIPE
    merged: bool = False
    size: tuple[int, int] | None = None

    @classmethod
    def like(cls, out: int = 1, err: int = 2, *, files: bool = True) -> Stdio:
        """The stdio of `node FILE` run with this process's fds `out` and `err`; but
        with pipes for files unless `files` (node's bytes are not tonic's output: the
        view draws them)."""
        merged = _same(out, err)
        stdout, stderr = _kind(out, files), _kind(err, files)
        tty = out if stdout == TTY else err if stderr == TTY else None
        return cls(stdout, stdout if merged else stderr, merged, _size(tty) if tty else None)

    def files(self) -> set[int]:
        """The streams (1, 2) that are a file node writes itself."""
        return {n for n, kind in ((1, self.stdout), (2, self.stderr)) if kind == FILE} - (
            {2} if self.merged else set()
        )

    def pipes_only(self) -> Stdio:
        """The same, with pipes for terminals and files (an engine that has no others)."""
        return Stdio(merged=self.merged)

    def key(self) -> str:
        """What snapshots and stored runs depend on ("" for two pipes)."""
        if self == Stdio():
            return ""
        size = f" {self.size[0]}x{self.size[1]}" if self.size else ""
        return f"{self.stdout} {'merged' if self.merged else self.stderr}{size}"


def file_paths(stdio: Stdio, out: int = 1, err: int = 2) -> frozenset[str]:
    """The paths of the files node writes itself (this process's `out` and `err`)."""
    fds = {1: out, 2: err}
    found = set()
    for stream in stdio.files():
        with contextlib.suppress(OSError):
            found.add(os.readlink(f"/proc/self/fd/{fds[stream]}"))
    return frozenset(found)


class Appended:
    """A regular file node writes itself: what was appended to it since the last look
    (at the description's offset, which node's writes move, as tonic's do)."""

    def __init__(self, fd: int) -> None:
        self.writer = os.dup(fd)
        self.reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        self.append = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
        self.pos = 0
        self.start = self.pos = self._offset()

    def _offset(self) -> int:
        """Where the next write goes: the offset, or the end when opened to append
        (its offset is 0 until the first write)."""
        try:
            if self.append:
                return os.fstat(self.writer).st_size
            return os.lseek(self.writer, 0, os.SEEK_CUR)
        except OSError:
            return self.pos

    def rebase(self) -> None:
        """What is there now is not the kernel's (tonic wrote it)."""
        self.pos = self._offset()

    def new(self) -> bytes:
        end = self._offset()
        parts = []
        while self.pos < end:
            try:
                data = os.pread(self.reader, min(end - self.pos, 1 << 20), self.pos)
            except OSError:
                data = b""
            if not data:
                break
            parts.append(data)
            self.pos += len(data)
        self.pos = end
        return b"".join(parts)

    def rewind(self) -> None:
        """Take back what this kernel run wrote (a run that is to be done again)."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.writer, self.start)
            os.lseek(self.writer, self.start, os.SEEK_SET)
        self.pos = self.start

    def close(self) -> None:
        for fd in (self.writer, self.reader):
            with contextlib.suppress(OSError):
                os.close(fd)


def _pty(like: int) -> tuple[int, int]:
    """(master, slave) of a new pseudo-terminal with the terminal `like`'s modes, less
    output processing, and its size."""
    master, slave = os.openpty()
    with contextlib.suppress(OSError, termios.error):
        attrs = termios.tcgetattr(like)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(like, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    return master, slave


@dataclass
class Channels:
    """tonic's ends and the kernel's of its four channels, the files node writes
    itself (by stream: 1 stdout, 2 stderr; tonic's end of such a stream is -1), and the
    pseudo-terminals' masters with the terminals they copy (winsize.py)."""

    ours: Pipes
    theirs: Pipes
    files: dict[int, Appended]
    ptys: dict[int, int]


def open_channels(stdio: Stdio, out: int = 1, err: int = 2) -> Channels:
    """The command and event pipes, and stdout and stderr as `stdio` says, made from
    this process's fds `out` and `err`."""
    cmd_r, cmd_w = os.pipe()
    ev_r, ev_w = os.pipe()
    ours = {1: -1, 2: -1}
    theirs = {1: -1, 2: MERGED}
    files: dict[int, Appended] = {}
    ptys: dict[int, int] = {}
    for stream, kind, fd in ((1, stdio.stdout, out), (2, stdio.stderr, err)):
        if stream == 2 and stdio.merged:
            break
        # A pipe when no pseudo-terminal can be had, or the file cannot be read back.
        with contextlib.suppress(OSError):
            if kind == TTY:
                ours[stream], theirs[stream] = _pty(fd)
                ptys[ours[stream]] = fd
            elif kind == FILE:
                files[stream] = Appended(fd)
                theirs[stream] = os.dup(fd)
        if theirs[stream] < 0:
            ours[stream], theirs[stream] = os.pipe()
    return Channels(
        Pipes(cmd_w, ev_r, ours[1], ours[2]), Pipes(cmd_r, ev_w, theirs[1], theirs[2]), files, ptys
    )
