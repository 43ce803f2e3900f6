"""`make bench` rows for keys from observations: whether runs invoked in other ways still
resume, what a crowded folder costs a run, and what observing costs a fresh run."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TONIC = [sys.executable, "-m", "tonic"]

NOTEBOOK = """\
// %% read a data file
const fs = require('fs');
const data = JSON.parse(fs.readFileSync(__dirname + '/data.json', 'utf8'));
{{ const t = Date.now(); while (Date.now() - t < 200); }}
console.log('data', data.v);

// %% write
fs.writeFileSync(__dirname + '/out.txt', String(data.v));
{{ const t = Date.now(); while (Date.now() - t < 200); }}

// %% last
console.log('last', {last});
"""


def _project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "data.json").write_text('{"v": 1}')
    nb = folder / "nb.js"
    nb.write_text(NOTEBOOK.format(last=0))
    return nb


def _json(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=True)
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def hit_rows(work: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    """Resumable runs (the last cell edited) invoked through make, bash -c, another
    working directory, and --plain after the view: how many resume."""
    nb = _project(work / "hits")
    run = [*TONIC, "run", "--json", "--engine", "criu", str(nb)]
    _json(run, nb.parent, env)  # the view's run
    (nb.parent / "Makefile").write_text(f"run:\n\t@{' '.join(run)}\n")
    ways = {
        "make": (["make", "-s", "-C", str(nb.parent), "run"], nb.parent),
        "bash -c": (["bash", "-c", " ".join(run)], nb.parent),
        "another working directory": (run, work),
    }
    hits = []
    for last, (way, (cmd, cwd)) in enumerate(ways.items(), start=1):
        nb.write_text(NOTEBOOK.format(last=last))
        if int(str(_json(cmd, cwd, env)["restored"])) == 2:
            hits.append(way)
    nb.write_text(NOTEBOOK.format(last=9))
    why = subprocess.run(
        [*TONIC, "why", "--plain", str(nb)], cwd=nb.parent, env=env, capture_output=True
    )
    if b"restores cells 1-2" in why.stdout:
        hits.append("--plain after the view")
    return [
        (
            "resumed: make, bash -c, another working directory, --plain after the view",
            f"{len(hits)} of 4",
            "goal 4 of 4 (before observed keys: 0 of 4)",
        )
    ]


def _resume_ms(nb: Path, env: dict[str, str], runs: int = 5) -> float:
    """Median wall time of a resumed run (the last cell edited each time)."""
    times = []
    for i in range(runs + 1):
        nb.write_text(NOTEBOOK.format(last=100 + i))
        started = time.monotonic()
        subprocess.run(
            [*TONIC, "run", "--plain", "--engine", "criu", str(nb)],
            cwd=nb.parent,
            env=env,
            capture_output=True,
            check=True,
        )
        if i:  # the first one makes the snapshots
            times.append(time.monotonic() - started)
    return statistics.median(times) * 1000


def crowd_rows(work: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    """A resumed run beside 100,000 files against one in an empty folder."""
    empty = _project(work / "empty")
    crowded = _project(work / "crowded")
    print("bench: 100,000 files beside a notebook ...", file=sys.stderr)
    for d in range(100):
        sub = crowded.parent / f"d{d}"
        sub.mkdir()
        for i in range(1000):
            (sub / f"f{i}").write_bytes(b"")
    alone, beside = _resume_ms(empty, env), _resume_ms(crowded, env)
    return [
        ("resumed run, notebook alone in its folder (median of 5)", f"{alone:.0f} ms", ""),
        (
            "resumed run beside 100,000 files (median of 5)",
            f"{beside:.0f} ms",
            f"{beside - alone:+.0f} ms (goal within 10 ms)",
        ),
    ]


def observe_rows(stats: dict[str, object], seconds: float) -> list[tuple[str, str, str]]:
    """What observing cost a fresh run (the run's own measurement)."""
    spent = float(str(stats.get("observe_seconds") or 0.0))
    return [
        (
            "fresh run: observing files and uses (fanotify, deps)",
            f"{spent * 1000:.0f} ms",
            f"{spent / seconds:.1%} of the run (goal <= 3%)",
        )
    ]
