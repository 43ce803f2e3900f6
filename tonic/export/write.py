"""Puts a rendered package in place all at once, and packs it with the real npm.

The package is written into a fresh folder beside the output folder, then renamed onto
it: a failed or interrupted export leaves the output as it was (at worst a hidden
`.NAME.tonic-*` folder beside it), never half a package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tonic.errors import ExportError
from tonic.export.deps import shown


def check_output(out: Path, *, force: bool, protected: list[Path]) -> None:
    """Refuse an output folder that is a file, holds something (unless `force`), or holds
    a file being exported (not even with `force`: replacing it would delete them)."""
    for path in protected:
        if path == out or out in path.parents:
            raise ExportError(
                f"{shown(out)}: the output folder holds {shown(path)}, which is exported; "
                "choose another folder (-o)"
            )
    if out.exists() and not out.is_dir():
        raise ExportError(f"{shown(out)}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(
            f"{shown(out)}: the output folder exists and is not empty; use --force to replace it"
        )


def publish(out: Path, files: dict[str, bytes], *, force: bool) -> None:
    """Write `files` (POSIX path inside the package -> bytes) as the folder `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tonic-", dir=out.parent))
    try:
        for rel, data in sorted(files.items()):
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for directory in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)
        if out.exists():
            check_output(out, force=force, protected=[])
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.tonic-old-", dir=out.parent))
            os.rename(out, old / "out")
            os.rename(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def npm_pack(out: Path) -> Path:
    """Run `npm pack` in the package folder; the tarball it wrote there."""
    npm = shutil.which("npm")
    if npm is None:
        raise ExportError("--tarball needs npm, which is not on PATH")
    proc = subprocess.run(
        [npm, "pack", "--json", "--ignore-scripts"],
        cwd=out,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise ExportError(f"npm pack failed in {shown(out)}: {' / '.join(tail)}")
    try:
        filename = json.loads(proc.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        raise ExportError(f"npm pack printed no tarball name: {proc.stdout[:200]!r}") from None
    return out / str(filename)
