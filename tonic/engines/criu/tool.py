"""Finding and calling CRIU: checkpoint a process tree, restore it into a fresh one.

tonic looks for CRIU in `$TONIC_CRIU`, then on PATH, then in the private install that
`scripts/install-criu` (run by `make setup`) makes under ~/.local/share/tonic/criu.

A dump or restore has a deadline that grows with the memory it moves; past it, or on
Ctrl-C or SIGTERM, CRIU and every process it started are killed by pid (a restore that
cannot finish falls back to a fresh run).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tonic import settings
from tonic.engines.criu.lazy import LazyPages, last_error, serve
from tonic.errors import EngineError
from tonic.procs import descendants, forking, holders, parent_death_signal
from tonic.store import recall, remember

MIN_VERSION = (4, 0)
# Seconds a dump or restore may take: a base, and more per byte it moves (CRIU moves
# hundreds of MB a second; the deadline is for a CRIU that hangs, not a slow one).
DEADLINE_BASE = 60.0
DEADLINE_PER_BYTE = 1 / (10 << 20)
CANCEL_POLL = 0.02  # seconds between two looks at a call's `cancel`


def deadline(size: int) -> float:
    """The deadline of a dump or restore moving `size` bytes."""
    return DEADLINE_BASE + size * DEADLINE_PER_BYTE


def private_install() -> Path:
    return settings.current().criu_home / "bin" / "criu"


@dataclass(frozen=True)
class Criu:
    path: str
    version: tuple[int, ...]

    def run(
        self,
        *args: str,
        timeout: float | None = None,
        cancel: Callable[[], bool] | None = None,
        **kwargs: object,
    ) -> subprocess.CompletedProcess[str]:
        """CRIU with `args`; past `timeout` (subprocess.TimeoutExpired), once `cancel`
        says so (Cancelled), or interrupted, CRIU and what it started are killed first."""
        end = None if timeout is None else time.monotonic() + timeout
        popen = None
        try:
            with forking():
                popen = subprocess.Popen(  # type: ignore[call-overload]
                    [self.path, *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    # A tonic killed outright leaves no CRIU behind.
                    preexec_fn=parent_death_signal(signal.SIGKILL),
                    **kwargs,
                )
        except BaseException:  # a signal held during the fork: CRIU goes first
            if popen is not None:
                _end(popen)
            raise
        with popen as proc:
            try:
                while True:
                    left = None if end is None else max(0.0, end - time.monotonic())
                    wait = left if cancel is None else min(CANCEL_POLL, left or CANCEL_POLL)
                    try:
                        out, err = proc.communicate(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        if cancel is not None and proc.poll() is None and cancel():
                            raise Cancelled from None
                        if end is not None and time.monotonic() >= end:
                            raise
            except BaseException:
                _end(proc)
                raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _end(proc: subprocess.Popen[str]) -> None:
    """CRIU stopped (it forks no more), what it started killed, then CRIU itself."""
    with contextlib.suppress(OSError):
        os.kill(proc.pid, signal.SIGSTOP)
    _kill_tree(proc.pid)
    proc.kill()
    proc.wait()


class Cancelled(Exception):
    """A CRIU call ended early: its caller no longer wants it."""


def _kill_tree(pid: int) -> None:
    """SIGKILL to `pid`'s descendants (a half-restored tree), stopped first so that none
    can start another."""
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for child in descendants(pid):
            with contextlib.suppress(OSError):
                os.kill(child, sig)


def _stamp(path: str) -> str:
    """What a CRIU's answers depend on: the command and the binary it runs (a wrapper,
    like the private install's, is rewritten when the binary is replaced)."""
    st = os.stat(path)
    return f"{path} {st.st_size} {st.st_mtime_ns} {os.uname().release}"


def _version(path: str) -> tuple[int, ...] | None:
    """CRIU's version (asking costs ~5 ms: remembered per binary)."""
    try:
        stamp = _stamp(path)
    except OSError:
        return None
    out = recall("criu-version.txt", stamp)
    asked = out is None
    if out is None:
        try:
            out = subprocess.run(
                [path, "--version"], capture_output=True, text=True, check=False, timeout=20
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
    m = re.search(r"Version:\s*([\d.]+)", out)
    if not m:
        return None
    if asked:
        remember("criu-version.txt", stamp, out)
    return tuple(int(x) for x in m.group(1).split(".") if x)


@functools.cache
def locate() -> tuple[Criu | None, str]:
    """(CRIU, None-reason): the first usable CRIU, or why there is none."""
    candidates: list[tuple[str, str]] = []
    chosen = settings.current().criu
    if chosen:
        candidates.append((chosen, "$TONIC_CRIU"))
    on_path = shutil.which("criu")
    if on_path:
        candidates.append((on_path, "PATH"))
    candidates.append((str(private_install()), "the private install"))
    problems: list[str] = []
    for path, where in candidates:
        if not os.access(path, os.X_OK):
            if where != "the private install" or not problems:
                problems.append(f"no criu at {path} ({where})")
            continue
        version = _version(path)
        if version is None:
            problems.append(f"{path} ({where}) does not run")
            continue
        if version < MIN_VERSION:
            shown = ".".join(map(str, version))
            problems.append(f"{path} ({where}) is CRIU {shown}; tonic needs 4.0 or newer")
            continue
        return Criu(path, version), f"CRIU {'.'.join(map(str, version))} at {path} ({where})"
    return None, "; ".join(problems) + " (run `make setup` or scripts/install-criu)"


@functools.cache
def availability() -> tuple[Criu | None, str]:
    """The CRIU tonic can use here, with a sentence saying why (not)."""
    if os.uname().sysname != "Linux":
        return None, "CRIU works on Linux only"
    if os.geteuid() != 0:
        return None, "CRIU needs root here (tonic runs as an unprivileged user)"
    criu, why = locate()
    if criu is None:
        return None, why
    problem = _checked(criu)
    if problem is not None:
        return None, f"`criu check` fails: {problem}"
    return criu, why


def _checked(criu: Criu) -> str | None:
    """`criu check`'s complaint, or None. The verdict is remembered per CRIU binary and
    kernel for a day (it takes about 60 ms, on every run otherwise)."""
    stamp = _stamp(criu.path)
    if recall("criu-check.txt", stamp, max_age=86400) == "ok":
        return None
    check = criu.run("check")
    if check.returncode != 0:
        lines = (check.stderr or check.stdout).strip().splitlines()
        return lines[-1] if lines else "no output"
    remember("criu-check.txt", stamp, "ok")
    return None


def lazy_supported(criu: Criu) -> bool:
    """Whether CRIU can restore lazily here (userfaultfd, non-cooperative: the tree may
    fork while its pages come in); remembered per CRIU binary and kernel for a day."""
    stamp = _stamp(criu.path)
    known = recall("criu-lazy.txt", stamp, max_age=86400)
    if known is None:
        check = criu.run("check", "--feature", "uffd-noncoop", timeout=20)
        known = "yes" if check.returncode == 0 else "no"
        remember("criu-lazy.txt", stamp, known)
    return known == "yes"


def lazy_failed(criu: Criu) -> None:
    """A lazy restore's daemon failed while the tree ran: restores are eager here for a
    day (lazy_supported says no)."""
    remember("criu-lazy.txt", _stamp(criu.path), "no")


def require() -> Criu:
    criu, why = availability()
    if criu is None:
        raise EngineError(f"CRIU cannot run here: {why}")
    return criu


def dump(
    criu: Criu, pid: int, images: Path, external: list[str] | None = None, size: int = 0
) -> float:
    """Checkpoint the tree rooted at `pid` (of `size` bytes of memory) into `images`,
    leaving it running; seconds. `external`: the terminals (`tty[rdev:dev]`) whose other
    end is not in the tree."""
    started = time.monotonic()
    proc = _bounded(
        criu,
        deadline(size),
        "dump",
        *(arg for name in external or () for arg in ("--external", name)),
        "--tree",
        str(pid),
        "--images-dir",
        str(images),
        "--leave-running",
        "--file-locks",
        "--log-file",
        "dump.log",
        "-v2",
        forks_in=images,
    )
    if proc.returncode != 0:
        raise EngineError(f"criu dump failed: {_log_error(images / 'dump.log', proc.stderr)}")
    return time.monotonic() - started


def restore(
    criu: Criu,
    images: Path,
    inherit: dict[int, str],
    work: Path | None = None,
    stopped: bool = False,
    cancel: Callable[[], bool] | None = None,
    lazy: Path | None = None,
) -> Restored:
    """Restore the tree in `images`, detached (`stopped`: left stopped, for SIGCONT);
    `inherit` maps our fds to the names the dumped tree had for them (`pipe:[inode]`,
    `tty[rdev:dev]`, a file's path without its leading slash). CRIU's log and pid file go
    to `work` (default: the images' folder, which is then written to); `cancel`: ends
    the restore early (Cancelled); `lazy` (the built kernel/lazyshim.c): the memory's
    pages come in as the tree touches them (lazy.py), served by the daemon returned."""
    started = time.monotonic()
    work = work or images
    pidfile = restored_pidfile(work)
    args = ["restore", "--images-dir", str(images), "--work-dir", str(work)]
    args += ["--restore-detached", "--file-locks", *(["--leave-stopped"] if stopped else [])]
    pages = serve(criu.path, images, work, lazy) if lazy is not None else None
    if pages is not None:
        args.append("--lazy-pages")
    args += ["--pidfile", str(pidfile), "--log-file", "restore.log", "-v2"]
    for fd, name in inherit.items():
        args += ["--inherit-fd", f"fd[{fd}]:{name}"]
    size = sum(f.stat().st_size for f in images.iterdir() if f.is_file())
    try:
        proc = _bounded(
            criu,
            deadline(size),
            *args,
            forks_in=work,
            cancel=cancel,
            pass_fds=tuple(inherit),
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        _kill_restored(pidfile, pages)  # a tree CRIU finished just as it was ended
        raise
    if proc.returncode != 0:
        _kill_restored(pidfile, pages)
        raise EngineError(f"criu restore failed: {_log_error(work / 'restore.log', proc.stderr)}")
    return Restored(int(pidfile.read_text().strip()), time.monotonic() - started, pages)


@dataclass(frozen=True)
class Restored:
    pid: int  # the restored tree's root
    seconds: float
    pages: LazyPages | None  # the daemon serving its memory (a lazy restore)


def restored_pidfile(work: Path) -> Path:
    """Where a restore with work folder `work` says the restored root's pid."""
    return work / "restored.pid"


def _kill_restored(pidfile: Path, pages: LazyPages | None) -> None:
    """SIGKILL to the init of a tree a failed restore left (it ends its namespace), then
    to its lazy pages' daemon."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
    if pages is not None:
        pages.kill()


def _bounded(
    criu: Criu,
    seconds: float,
    *args: str,
    forks_in: Path,
    cancel: Callable[[], bool] | None = None,
    **kwargs: object,
) -> subprocess.CompletedProcess[str]:
    """`criu ARGS` (a dump or restore: args[0]) within `seconds`, else an EngineError.
    Killed (from outside, as by the OOM killer, or by tonic), CRIU leaves what it forked
    and had not ended (a helper of its kernel checks that sleeps until CRIU ends it,
    half-made tasks) orphaned: those with their working folder or a file in the private
    folder `forks_in` are ended too."""
    killed = True
    try:
        proc = criu.run(*args, timeout=seconds, cancel=cancel, **kwargs)
        killed = proc.returncode < 0
    except subprocess.TimeoutExpired:
        raise EngineError(f"criu {args[0]} did not finish in {seconds:.0f} s: ended") from None
    finally:
        if killed:
            for pid in holders([os.path.realpath(forks_in)]):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    return proc


def _log_error(log: Path, stderr: str) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        lines = stderr.splitlines()
    said = last_error(lines)
    return "no log" if said is None else said
