"""`tonic check FILES...`: every notebook runs to the end without an error (the
pre-commit hook), and optionally still prints what its recorded-outputs file says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tonic.errors import TonicError
from tonic.notebook.cells import parse
from tonic.notebook.modkind import package_type
from tonic.notebook.source import NOTEBOOK_KINDS, NOTEBOOK_SUFFIXES, read_source
from tonic.outputs import difference, outputs_of, outputs_path, read, write
from tonic.recorded import failure, record

DECLARATIONS_RE = re.compile(r"\.d\.[cm]?ts$")  # types only: nothing to run
SKIP_RE = re.compile(r"^\s*//\s*tonic:\s*skip\b")
SKIP_MARKER = "// tonic: skip"


@dataclass(frozen=True)
class Verdict:
    status: str  # ok | skip | FAIL
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


def skip_marked(text: str) -> bool:
    """True when the file's first line (after a `#!` line) is `// tonic: skip`."""
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    return bool(lines) and SKIP_RE.match(lines[0]) is not None


def check_file(
    path: Path, *, outputs: bool, update_outputs: bool, timeout: float | None
) -> Verdict:
    shown = str(path)
    if path.suffix not in NOTEBOOK_SUFFIXES:
        return Verdict("skip", f"not {NOTEBOOK_KINDS} file")
    if DECLARATIONS_RE.search(path.name):
        return Verdict("skip", "a TypeScript declaration file")
    source = read_source(path, allow_empty=True)
    if skip_marked(source.text):
        return Verdict("skip", f"marked {SKIP_MARKER!r}")
    ptype, _ = package_type(source.path)
    nb = parse(source.data, filename=source.path.name, package_type=ptype)
    if not nb.code_cells:
        return Verdict("skip", "no code cells")
    result = record(path, timeout=timeout)
    problem = failure(result, source.path, shown, timeout)
    if problem is not None:
        return Verdict("FAIL", problem.describe())
    count = len(nb.code_cells)
    restored = f", {result.restored} restored" if result.restored else ""
    detail = f"{count} cell{'s' if count != 1 else ''}{restored}, {result.seconds:.2f} s"
    if not (outputs or update_outputs):
        return Verdict("ok", detail)
    target = outputs_path(source.path)
    current = outputs_of(result, source.path)
    if update_outputs:
        changed = write(target, current)
        return Verdict("ok", f"{detail}; {'wrote' if changed else 'unchanged:'} {target.name}")
    recorded = read(target)
    if recorded is None:
        return Verdict("ok", f"{detail}; no {target.name} to compare")
    stale = difference(recorded, current)
    if stale is not None:
        return Verdict(
            "FAIL",
            f"{target.name} is stale: {stale} "
            f"(rewrite it with `tonic check --update-outputs {shown}`)",
        )
    return Verdict("ok", f"{detail}; matches {target.name}")


def staged_files() -> list[Path]:
    """The staged (added, copied, modified, renamed) notebooks of this repo."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise TonicError(f"--staged: git {args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel").strip())
    except FileNotFoundError:
        raise TonicError("--staged needs git, which is not on PATH") from None
    names = git("diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z").split("\0")
    return [
        Path(os.path.relpath(top / name))
        for name in names
        if name and name.endswith(NOTEBOOK_SUFFIXES)
    ]


def check(
    files: list[Path],
    *,
    staged: bool,
    outputs: bool,
    update_outputs: bool,
    timeout: float | None,
) -> int:
    paths = list(files) + (staged_files() if staged else [])
    failed = 0
    for path in paths:
        try:
            verdict = check_file(
                path, outputs=outputs, update_outputs=update_outputs, timeout=timeout
            )
        except TonicError as err:
            verdict = Verdict("FAIL", str(err).removeprefix(f"{path}: "))
        failed += verdict.failed
        sys.stdout.write(f"{verdict.status:<4} {path}: {verdict.detail}\n")
        sys.stdout.flush()
    if failed:
        sys.stdout.write(
            f"tonic check: {failed} of {len(paths)} file{'s' if len(paths) != 1 else ''} failed\n"
        )
    return 1 if failed else 0
