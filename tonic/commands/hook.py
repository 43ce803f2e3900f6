"""`tonic hook install`: a plain git pre-commit hook, for repositories without the
pre-commit framework. It runs `tonic check --staged` before every commit."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tonic.errors import HookError

MARKER = "# tonic-hook: written by `tonic hook install`"


def hook_script(*, outputs: bool) -> str:
    python = shlex.quote(sys.executable)
    flags = " --outputs" if outputs else ""
    return (
        "#!/bin/sh\n"
        f"{MARKER} (`tonic hook install --force` rewrites it).\n"
        "# Runs `tonic check` on the staged notebooks (.js, .cjs, .mjs, .ts, .cts, .mts).\n"
        "# `git commit --no-verify` commits without it; delete this file to remove it.\n"
        f"if [ -x {python} ]; then\n"
        f"  exec {python} -m tonic check --staged{flags}\n"
        "fi\n"
        f"exec tonic check --staged{flags}\n"
    )


def hook_path() -> Path:
    """Where git looks for the pre-commit hook (core.hooksPath respected)."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks/pre-commit"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise HookError("git is not on PATH") from None
    if proc.returncode != 0:
        raise HookError("not in a git repository (run `git init` first, or cd into one)")
    return Path(proc.stdout.strip()).resolve()


def install(*, force: bool, outputs: bool) -> int:
    path = hook_path()
    if path.exists():
        try:
            current = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise HookError(f"{path}: cannot read the existing hook: {err.strerror}") from None
        if MARKER not in current and not force:
            raise HookError(
                f"{path} exists and is not tonic's hook; use --force to replace it "
                "(or add `tonic check --staged` to it yourself)"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hook_script(outputs=outputs), encoding="utf-8")
    path.chmod(0o755)
    print(f"installed {path}: `git commit` now runs `tonic check --staged`")
    return 0
