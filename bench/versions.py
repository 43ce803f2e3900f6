"""`make bench` rows per node version of the matrix (`make nodes`): the edit of the last
cell of the 20 x 0.5 s notebook under that node, first on PATH, as CommonJS and as an ES
module, against its own plain `node FILE` (medians of two edits), and tonic's resume
overhead beyond the cell."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TONIC = [sys.executable, "-m", "tonic"]
VERSIONS = ("22.22.0", "24.22.3", "26.12.1")  # the Makefile's NODE_VERSIONS


def nodes_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(os.environ.get("TONIC_NODES_HOME") or Path(data) / "tonic/node")


def _timed(cmd: list[str], env: dict[str, str], want: bytes) -> float:
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0 or want not in proc.stdout:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def version_rows(
    work: Path, env: dict[str, str], notebook: Callable[[int], str], per_cell: float
) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for version in VERSIONS:
        bin_dir = nodes_home() / version / "bin"
        if not (bin_dir / "node").is_file():
            rows.append((f"node {version}: edit last cell", "not installed", "`make nodes`"))
            continue
        venv = dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
        for suffix, kind in ((".js", ""), (".mjs", " (ES module)")):
            nb = work / f"slow-{version}{suffix}"
            what = f"node {version}: edit last cell{kind}"
            rows += _edit_rows(nb, what, venv, version, notebook)
    return [_overhead(r, per_cell) for r in rows]


def _edit_rows(
    nb: Path, what: str, venv: dict[str, str], version: str, notebook: Callable[[int], str]
) -> list[tuple[str, str, str]]:
    # The last cell prints its node's version: the run is proved to be under it.
    def text(n: int) -> str:
        return notebook(n) + "console.log(process.version);\n"

    print(f"bench: {nb.name}: a fresh run, then two edits ...", file=sys.stderr)
    nb.write_text(text(0))
    want = f"v{version}".encode()
    _timed([*TONIC, "run", "--plain", "--engine", "criu", str(nb)], venv, want)
    nodes, resumes = [], []
    for edit in (1, 2):
        nb.write_text(text(edit))
        nodes.append(_timed(["node", str(nb)], venv, want))
        resumes.append(_timed([*TONIC, "run", "--plain", "--engine", "criu", str(nb)], venv, want))
    t_node, t_criu = statistics.median(nodes), statistics.median(resumes)
    return [
        (f"{what}, plain `node FILE`", f"{t_node:.2f} s", "1.00x"),
        (f"{what}, tonic (criu, warm server)", f"{t_criu:.2f} s", f"{t_criu / t_node:.3f}x"),
    ]


def _overhead(row: tuple[str, str, str], per_cell: float) -> tuple[str, str, str]:
    """A tonic row gets its resume overhead beyond the edited cell's own time."""
    if "tonic" not in row[0] or not row[1].endswith(" s"):
        return row
    overhead = (float(row[1][:-2]) - per_cell) * 1000
    return (row[0], row[1], f"{row[2]}; resume overhead {overhead:.0f} ms")
