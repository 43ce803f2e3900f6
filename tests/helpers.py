"""Shared test helpers: run plain node and the tonic CLI the way a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


def _run(cmd: list[str], cwd: Path | None, timeout: float) -> Outcome:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return Outcome(proc.stdout, proc.stderr, proc.returncode)


def node(path: Path, *args: str, cwd: Path | None = None, timeout: float = 60) -> Outcome:
    return _run(["node", str(path), *args], cwd or path.parent, timeout)


def tonic(*args: str, cwd: Path | None = None, timeout: float = 60) -> Outcome:
    return _run([sys.executable, "-m", "tonic", *args], cwd, timeout)


def required_engines() -> set[str]:
    """Engines whose absence must fail the tests (CI sets TONIC_REQUIRE_ENGINES)."""
    raw = os.environ.get("TONIC_REQUIRE_ENGINES", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def require_engine(name: str) -> None:
    """Skip a test of an engine that cannot run here, or fail if CI requires it."""
    import pytest

    from tonic.engines import ENGINES

    available = ENGINES[name].availability()
    if available.ok:
        return
    if name in required_engines():
        pytest.fail(f"the {name} engine is required here but cannot run: {available.reason}")
    pytest.skip(f"{name} engine unavailable: {available.reason}")
