"""Building tonic's C helpers from kernel/: the clock shim (clockshim.c) that keeps
pauses out of node's clocks, the init (init.c) of the kernel's PID namespace, and the fix
(lazyshim.c) that CRIU's lazy-pages daemon needs to serve a tree that frees memory.

Each is compiled on first use with the machine's C compiler into the snapshot cache,
keyed by its source's hash. Without a compiler the snapshot engines cannot run (they
need the init: tonic falls back to the replay engine); the init is linked statically
where the C library allows it, so that it runs in any container image.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tonic.kernel.driver import kernel_file
from tonic.store.layout import BIN, staging_name


def _build(
    cache_root: Path, source_name: str, what: str, suffix: str, attempts: list[list[str]]
) -> tuple[Path | None, str]:
    """(path of the built `source_name`, None-reason); `attempts`: the compiler's
    arguments after the source, tried in turn until one builds."""
    source = kernel_file(source_name)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    stem = source_name.removesuffix(".c")
    target = cache_root / BIN / f"{stem}-{digest}{suffix}"
    if target.exists():
        return target, f"{what} at {target}"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, f"no C compiler (cc) to build {what}"
    last = "?"
    for flags in attempts:
        built = staging_name(cache_root, "build")  # this process's: gone if it is killed
        tmp = str(built)
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            built.parent.mkdir(mode=0o700, exist_ok=True)
            os.close(os.open(built, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError as err:  # e.g. the cache's disk is full
            return None, f"cannot build {what} in {target.parent}: {err.strerror}"
        try:
            proc = subprocess.run(
                [cc, "-O2", "-o", tmp, str(source), *flags],
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as err:
            _remove(tmp)
            return None, f"the C compiler {cc} does not run ({err.strerror}) to build {what}"
        if proc.returncode == 0:
            os.chmod(tmp, 0o700)
            os.replace(tmp, target)
            return target, f"{what} built at {target}"
        _remove(tmp)  # (a failed link may have removed it already)
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return None, f"{what} does not build: {last}"


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


_built: dict[tuple[str, Path], tuple[Path | None, str]] = {}


def _once(
    source_name: str, cache_root: Path, build: Callable[[], tuple[Path | None, str]]
) -> tuple[Path | None, str]:
    """A build's result, kept in this process once it has worked (a failure, e.g. on a
    full disk, is tried again next time)."""
    key = (source_name, cache_root)
    if key not in _built:
        found = build()
        if found[0] is None:
            return found
        _built[key] = found
    return _built[key]


def _library(cache_root: Path, source_name: str, what: str) -> tuple[Path | None, str]:
    return _once(
        source_name,
        cache_root,
        lambda: _build(cache_root, source_name, what, ".so", [["-shared", "-fPIC", "-ldl"]]),
    )


def shim(cache_root: Path) -> tuple[Path | None, str]:
    """(path of the built clock shim, None-reason)."""
    return _library(cache_root, "clockshim.c", "the clock shim")


def lazy_shim(cache_root: Path) -> tuple[Path | None, str]:
    """(path of the built fix for CRIU's lazy-pages daemon, None-reason)."""
    return _library(cache_root, "lazyshim.c", "the lazy-pages fix")


def init(cache_root: Path) -> tuple[Path | None, str]:
    """(path of the built init, None-reason)."""
    return _once(
        "init.c",
        cache_root,
        lambda: _build(cache_root, "init.c", "tonic's init", "", [["-static"], []]),
    )
