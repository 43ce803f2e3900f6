"""`make bench` rows of restore time against memory size: a first cell that fills 50 MB
to 2 GB, then an edit of the second cell: with a snapshot at every pause, resumed once
right after the fresh run (its snapshots may still be going into the store) and once
later; and with tonic's default policy (engines/policy.py); each against plain node."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TONIC = [sys.executable, "-m", "tonic"]
SIZES_MB = (50, 500, 1000, 2000)


def memory_notebook(mb: int, tweak: int, policy: str = "every pause") -> str:
    """`mb` MB of memory written in the first cell (every page touched, none zero: a
    Float64Array, so the size does not depend on V8's object layout); `tweak` changes
    only the second cell, `policy` the first (runs of another policy share no snapshot)."""
    return (
        f"// %% fill {mb} MB (snapshots: {policy})\n"
        f"const big = new Float64Array({mb} * 131072);\n"
        "for (let i = 0; i < big.length; i++) big[i] = i;\n"
        "console.log('filled', big.length);\n\n"
        "// %% use it\n"
        f"console.log('sample', big[{tweak}]);\n"
    )


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, bytes]:
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout[-2000:]).decode(errors="replace")
        sys.exit(f"bench: {' '.join(cmd)} failed (exit code {proc.returncode}):\n{said}")
    return elapsed, proc.stdout


def _stats(out: bytes) -> dict[str, object]:
    stats = json.loads(out)["stats"]
    assert isinstance(stats, dict)
    return stats


def _restore(out: bytes) -> tuple[float, str]:
    """A resumed run's restore: its seconds, and where its images came from."""
    stats = _stats(out)
    where = {"hot": "the unpacked copy", "dump": "the dump itself", "store": "the store"}
    return float(str(stats["restore_seconds"])), where.get(str(stats["restored_from"]), "?")


def memory_rows(work: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    every = dict(env, TONIC_SNAPSHOT_MIN_MS="0")  # a snapshot at every pause, to time restores
    for mb in SIZES_MB:
        path = work / f"memory{mb}.js"
        run = [*TONIC, "run", "--json", "--engine", "criu", str(path)]
        print(f"bench: {mb} MB of memory: fresh runs, resumes, node ...", file=sys.stderr)
        path.write_text(memory_notebook(mb, 1))
        _, out = _run(run, every)
        rss = max(int(r) for r in _stats(out)["rss_bytes"])  # type: ignore[attr-defined]
        path.write_text(memory_notebook(mb, 2))
        first, out = _run(run, every)  # at once: the store may still take the images in
        first_restore, first_from = _restore(out)
        path.write_text(memory_notebook(mb, 3))
        t_node = statistics.median(_run(["node", str(path)], env)[0] for _ in range(2))
        path.write_text(memory_notebook(mb, 4))
        later, out = _run(run, every)
        restore, restore_from = _restore(out)
        # tonic's default policy: a snapshot only where restoring it beats running again
        path.write_text(memory_notebook(mb, 5, "default"))
        _run(run, env)
        path.write_text(memory_notebook(mb, 6, "default"))
        default, out = _run(run, env)
        restored = json.loads(out)["restored"]
        rows += [
            (
                f"~{mb} MB of memory (RSS {rss / 2**20:.0f} MiB): plain `node FILE`",
                f"{t_node:.2f} s",
                "1.00x",
            ),
            (
                "  edit, tonic's default policy",
                f"{default:.2f} s",
                f"{default / t_node:.2f}x; "
                + ("resumed" if restored else "ran afresh: no snapshot worth it"),
            ),
            (
                "  edit resumed at once after a fresh run (a snapshot at every pause)",
                f"{first:.2f} s",
                f"{first / t_node:.2f}x; restore {first_restore * 1000:.0f} ms ({first_from})",
            ),
            (
                "  edit resumed later",
                f"{later:.2f} s",
                f"{later / t_node:.2f}x; restore {restore * 1000:.0f} ms ({restore_from})"
                + (" (goal: within 300 ms)" if mb == 1000 else ""),
            ),
        ]
    return rows
