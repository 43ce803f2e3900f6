"""Shared test helpers: run plain node and the tonic CLI the way a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# kind -> faults injected, each followed by a run equal to node (the fault campaign and
# the fault tests; conftest prints it at the end of the session)
FAULTS: Counter[str] = Counter()
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
CONFORMANCE = FIXTURES / "conformance"


@dataclass(frozen=True)
class Outcome:
    stdout: bytes
    stderr: bytes
    code: int

    def describe(self) -> str:
        return (
            f"exit {self.code}\n--- stdout ---\n{self.stdout.decode(errors='replace')[:2000]}"
            f"\n--- stderr ---\n{self.stderr.decode(errors='replace')[:2000]}"
        )


def _run(
    cmd: list[str],
    cwd: Path | None,
    timeout: float,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> Outcome:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=timeout,
        check=False,
        env=env,
    )
    return Outcome(proc.stdout, proc.stderr, proc.returncode)


# A frame of node's native stack trace (process.abort(), a fatal error) that names no
# symbol shows only its address: under the official builds of node >= 22, libc's abort,
# which ASLR moves at every run of node itself (and which the symbolizer sometimes counts
# as `[node]`).
_BARE_FRAME = re.compile(rb"^( *\d+: )0x[0-9a-f]+(?: +\[node\])? *$", re.MULTILINE)


def steady(stderr: bytes) -> bytes:
    """`stderr` with the addresses of native frames that name no symbol left out."""
    return _BARE_FRAME.sub(rb"\g<1>0x?", stderr)


def node_version() -> str:
    """`node --version` of the node on PATH, the tests' node (`make test` runs the node
    matrix with another first on PATH); "?" when there is none."""
    try:
        got = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return got.stdout.strip() or "?"


def node_major() -> int:
    """The major version of the tests' node."""
    return int(node_version().lstrip("v").split(".")[0])


def node_strips_types() -> bool:
    """The tests' node runs TypeScript files (type stripping: node 22.18, 23.6 and later)."""
    try:
        major, minor = (int(p) for p in node_version().lstrip("v").split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= ((23, 6) if major == 23 else (22, 18))


def node(
    path: Path,
    *args: str,
    cwd: Path | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> Outcome:
    return _run(["node", str(path), *args], cwd or path.parent, timeout, env, stdin)


def tonic(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> Outcome:
    """`python -m tonic ARGS`; the tests run tonic in-process ($TONIC_SERVER=off, set by
    conftest) unless `env` says otherwise."""
    return _run([sys.executable, "-m", "tonic", *args], cwd, timeout, env, stdin)


def required_engines() -> set[str]:
    """Engines whose absence must fail the tests (CI sets TONIC_REQUIRE_ENGINES)."""
    raw = os.environ.get("TONIC_REQUIRE_ENGINES", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def require_engine(name: str) -> None:
    """Skip a test of an engine that cannot run here, or fail if CI requires it."""
    import pytest

    from tonic import settings
    from tonic.engines import ENGINES

    available = ENGINES[name](settings.current()).availability()
    if available.ok:
        return
    if name in required_engines():
        pytest.fail(f"the {name} engine is required here but cannot run: {available.reason}")
    pytest.skip(f"{name} engine unavailable: {available.reason}")


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` ends (or is a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (ProcessLookupError, FileNotFoundError):
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def served_count(env: dict[str, str]) -> int:
    """Commands served so far by the warm servers of `env`'s runtime folder."""
    from tonic.commands.server import servers

    return sum(int(s.fields.get("served", "0")) for s in servers(env["TONIC_RUNTIME_DIR"]))


def kernels_running(path: Path) -> str:
    """The processes whose command line names the notebook `path` (pgrep, read-only),
    one line each: pid, parent, state, command line (empty: none)."""
    found = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True)
    described = (described_process(int(pid)) for pid in found.stdout.split())
    return "\n".join(line for line in described if line is not None)


def described_process(pid: int) -> str | None:
    """`pid`, its parent, its state and its command line, in one line (None: gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return f"{pid} (parent {stat[1]}, {stat[0]}): {args.strip()}"


def criu_left(*roots: Path, within: float = 10.0) -> list[int]:
    """pids of CRIU processes (dump or restore) naming a path under one of `roots` that
    still run after `within` seconds (waited only while there are some)."""
    names = [str(root).encode() for root in roots]
    deadline = time.monotonic() + within
    while True:
        found = [
            pid
            for pid, args in _commands()
            if any(a.endswith(b"/criu") for a in args) and any(n in b" ".join(args) for n in names)
        ]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def ingest_workers(root: Path) -> list[int]:
    """pids of the ingest workers storing into the cache at `root`."""
    mine = [b"-m", b"tonic.store.ingest", str(root).encode()]
    return [pid for pid, args in _commands() if args[1:4] == mine]


def _commands() -> Iterator[tuple[int, list[bytes]]]:
    """Every process's pid and arguments."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue


def no_kernel_left(path: Path, within: float = 10.0) -> bool:
    """Whether every process running notebook `path` is gone within `within` seconds."""
    deadline = time.monotonic() + within
    while kernels_running(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not kernels_running(path)


def set_files(folder: Path, files: dict[str, bytes]) -> None:
    """Make the files right in `folder` exactly `files` (name to content)."""
    for p in folder.iterdir():
        if p.is_file() and p.name not in files:
            p.unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)


def fill_disk(folder: Path) -> None:
    """Write a file in `folder` until no byte more fits on its disk."""
    import errno

    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (1 << 20, 4096):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as err:
                assert err.errno == errno.ENOSPC


def mount_tmpfs(point: Path, size: str) -> None:
    """Mount a tmpfs of `size` at `point` (made); skips the test unless it can."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")


def unmount(point: Path) -> None:
    if subprocess.run(["umount", str(point)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(point)], check=False)


CRIU_KILLED_AFTER = """#!/bin/sh
# CRIU, but a dump is killed (SIGKILL) after a delay read from a file (none: no kill).
if [ "$1" = dump ] && [ -s {delay} ]; then
  {real} "$@" &
  pid=$!
  sleep "$(cat {delay})"
  kill -KILL $pid 2>/dev/null
  wait $pid
  exit $?
fi
exec {real} "$@"
"""


def criu_wrapper(folder: Path, template: str, **fields: object) -> Path:
    """`folder/criu`, a CRIU for $TONIC_CRIU: shell `template` with {real} (the real CRIU)
    and `fields` filled in."""
    from tonic.engines.criu.tool import locate

    real = locate()[0]
    assert real is not None
    wrapper = folder / "criu"
    wrapper.write_text(template.format(real=real.path, **fields))
    wrapper.chmod(0o755)
    return wrapper


def criu_killed_after(folder: Path) -> tuple[Path, Path]:
    """A CRIU for $TONIC_CRIU whose dumps are killed (SIGKILL) after the number of
    seconds written in the file returned with it (made empty: no kill), both in `folder`."""
    wrapper, delay = folder / "criu", folder / "criu-kill-delay"
    if not wrapper.exists():
        delay.write_text("")
        criu_wrapper(folder, CRIU_KILLED_AFTER, delay=delay)
    return wrapper, delay
