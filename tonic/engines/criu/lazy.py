"""CRIU's lazy pages (TONIC_LAZY_PAGES, on where the kernel allows it): a restore that
copies the tree's memory in as the tree touches it.

`criu restore --lazy-pages` restores all but the contents of private memory, which a
daemon of its own (`criu lazy-pages`, one a restore) serves over userfaultfd: a page the
restored tree touches is copied in at its first touch, the others in the background,
and the daemon exits once all are in (or once the tree has ended). A restore's time then
hardly grows with the tree's memory (a 1 GB heap: 1.7 s eager, 0.03-0.1 s lazy, all of
it in 0.4 s; measured on these machines, README.md has the figures).

Until the daemon has exited, a page may not be in the tree's memory yet, and a dump would
miss it: `finish` waits for it first. The daemon never ends before the tree (a page
touched with no daemon to serve it would read as zeros): it is in a session of its own,
so that a Ctrl-C meant for node does not reach it, and it is only ended after the tree
(`end`) or with a restore that failed. It runs with tonic's fix preloaded
(kernel/lazyshim.c): without it, CRIU's daemon gave up when the tree unmapped memory
it had just discarded, as node does at its exit, and node died of SIGSEGV. A daemon that
fails all the same while the tree runs is reported (`end`): the engine then warns that
the run may differ from node's, and restores eagerly from then on.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from tonic.errors import EngineError

READY_SECONDS = 20.0  # for the daemon to listen (it takes about 5 ms)
END_SECONDS = 2.0  # for the daemon to see that the tree has ended


class LazyPages:
    """The daemon serving one restored tree's memory."""

    def __init__(self, proc: subprocess.Popen[bytes], log: BinaryIO) -> None:
        self.proc = proc
        self.log = log  # its stderr: CRIU's log (-v2: errors and warnings)

    def finish(self, seconds: float) -> None:
        """Wait until every page is in the tree's memory (the daemon has exited);
        EngineError if it failed, or did not finish in `seconds` (it is then ended)."""
        try:
            code = self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            raise EngineError(f"criu lazy-pages did not finish in {seconds:.0f} s") from None
        try:
            if code != 0:
                raise EngineError(f"criu lazy-pages failed: {self.error()}")
        finally:
            self.log.close()

    def end(self) -> str | None:
        """After the tree has ended: the daemon's own exit awaited, else it is ended;
        what went wrong if it failed (some page may then have read as zeros)."""
        try:
            code = self.proc.wait(END_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        problem = self.error() if code != 0 else None
        self.log.close()
        return problem

    def kill(self) -> None:
        """Ended now (a restore that failed: no tree to serve)."""
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def error(self) -> str:
        """The last error of the daemon's log."""
        with contextlib.suppress(OSError, ValueError):
            self.log.seek(0)
            said = last_error(self.log.read().decode(errors="replace").splitlines())
            if said is not None:
                return said
        code = self.proc.poll()
        if code is None:
            return "no answer"
        return f"exit status {code}" if code >= 0 else f"signal {-code}"


def last_error(lines: list[str]) -> str | None:
    """What a CRIU log says went wrong: its last error (but the RLIMIT_NOFILE one CRIU
    logs where it may not raise the limit, harmless), else its last line."""
    errors = [ln for ln in lines if "Error" in ln and "RLIMIT_NOFILE" not in ln]
    return (errors or lines)[-1].strip() if errors or lines else None


def serve(criu: str, images: Path, work: Path, fix: Path) -> LazyPages:
    """The daemon for a restore of `images` with the work folder `work` (where its
    socket is, and its working folder: a killed restore's leftovers are found by it),
    once it listens; `fix`: the built kernel/lazyshim.c, preloaded into it."""
    read, write = os.pipe()
    log = tempfile.TemporaryFile(prefix="tonic-lazy-")  # noqa: SIM115 (the daemon's, kept)
    try:
        args = [criu, "lazy-pages", "--images-dir", str(images), "--work-dir", str(work)]
        args += ["--status-fd", str(write), "--log-file", "-", "-v2"]
        proc = subprocess.Popen(
            args,
            pass_fds=(write,),
            stdin=subprocess.DEVNULL,
            stdout=log,  # (where CRIU writes a log file of "-")
            stderr=log,
            cwd=work,
            start_new_session=True,
            env=dict(os.environ, LD_PRELOAD=str(fix)),
        )
    except OSError as err:
        log.close()
        raise EngineError(f"criu lazy-pages cannot start: {err}") from None
    finally:
        os.close(write)
    daemon = LazyPages(proc, log)
    try:
        ready = _status(read, READY_SECONDS)
    finally:
        os.close(read)
    if not ready:
        problem = daemon.error()
        daemon.kill()
        raise EngineError(f"criu lazy-pages did not start: {problem}")
    return daemon


def _status(fd: int, seconds: float) -> bool:
    """Whether the daemon said, within `seconds`, that it listens (a NUL on its status
    pipe; an end of file: it exited)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            return os.read(fd, 1) == b"\0"
    return False
