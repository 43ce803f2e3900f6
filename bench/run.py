"""`make bench`: what time travel buys, measured in one run on this machine.

1. Edit-the-last-cell latency on a 20-cell notebook whose cells take 0.5 s each:
   plain `node FILE`, the replay engine, and the criu engine resuming.
2. Checkpoint and restore time with about 50 MB and 500 MB of JS heap.
3. Bytes stored per snapshot, against the process tree's resident memory.

Prints a Markdown table (README shows one).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TONIC = [sys.executable, "-m", "tonic"]


def slow_notebook(cells: int, seconds: float, last: int) -> str:
    parts = []
    for i in range(1, cells + 1):
        value = last if i == cells else i
        parts.append(
            f"// %% cell {i}\n"
            f"{{ const t = Date.now(); while (Date.now() - t < {int(seconds * 1000)}); }}\n"
            f"console.log('cell {i}', {value}, Math.random() < 1);\n"
        )
    return "\n".join(parts)


def heap_notebook(mb: int, tweak: int) -> str:
    # About 64 bytes of heap per small object plus its string.
    count = mb * 1024 * 1024 // 96
    return (
        "// %% build a heap\n"
        f"const big = Array.from({{ length: {count} }}, (_, i) => ({{ i, s: 'v' + i }}));\n"
        "console.log('objects', big.length);\n\n"
        "// %% use it\n"
        f"console.log('sample', big[{tweak}].s);\n"
    )


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
    return elapsed, proc


def run_json(path: Path, env: dict[str, str], engine: str) -> tuple[float, dict[str, object]]:
    elapsed, proc = timed([*TONIC, "run", "--json", "--engine", engine, str(path)], env)
    return elapsed, json.loads(proc.stdout)


def cache_bytes(env: dict[str, str]) -> int:
    _, proc = timed([*TONIC, "cache", "ls", "--json"], env)
    return int(json.loads(proc.stdout)["stored_bytes"])


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def precommit_rows(work: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    """The `tonic-check` hook under the real pre-commit framework, in a fresh git repo:
    its first run, a second run on the unchanged notebook (replayed from the snapshots),
    and a run after editing the last cell (resumed)."""
    repo = work / "precommit-repo"
    repo.mkdir()
    cells, per_cell = 8, 0.25
    nb = repo / "nb.js"
    nb.write_text(slow_notebook(cells, per_cell, 0))
    tonic_bin = Path(sys.executable).parent / "tonic"
    (repo / ".pre-commit-config.yaml").write_text(
        "repos:\n- repo: local\n  hooks:\n  - id: tonic-check\n    name: tonic check\n"
        f"    entry: {tonic_bin} check\n    language: system\n"
        "    files: \\.(js|cjs|mjs)$\n"
    )
    env = dict(env, PRE_COMMIT_HOME=str(work / "pre-commit-home"))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for args in (["init", "-q"], ["add", "."]):
        subprocess.run([*git, *args], cwd=repo, check=True, env=env)
    hook = [sys.executable, "-m", "pre_commit", "run", "tonic-check", "--files", "nb.js"]

    def run_hook() -> float:
        started = time.monotonic()
        proc = subprocess.run(hook, cwd=repo, capture_output=True, env=env, check=False)
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            sys.exit(f"bench: pre-commit failed:\n{proc.stdout.decode(errors='replace')}")
        return elapsed

    print(f"bench: pre-commit hook on {cells} cells x {per_cell} s ...", file=sys.stderr)
    first = run_hook()
    second = run_hook()
    nb.write_text(slow_notebook(cells, per_cell, 1))
    edited = run_hook()
    what = f"{cells} cells x {per_cell} s"
    return [
        (f"pre-commit `tonic-check` hook, first run ({what})", f"{first:.2f} s", "1.00x"),
        (
            "pre-commit hook, second run, unchanged notebook (replayed)",
            f"{second:.2f} s",
            f"{second / first:.3f}x",
        ),
        (
            "pre-commit hook after editing the last cell (resumed)",
            f"{edited:.2f} s",
            f"{edited / first:.3f}x",
        ),
    ]


def docker_rows(work: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    """The docker engine at ~50 MB of heap: checkpoint (CRIU + commit) and restore into a
    new container (anchor: a plain `docker checkpoint create` took ~1.2 s here)."""
    probe = subprocess.run([*TONIC, "doctor"], capture_output=True, text=True, env=env)
    if "docker  yes" not in probe.stdout:
        return [("docker engine", "not measured", "no usable Docker daemon (make docker)")]
    heap = work / "docker50.js"
    heap.write_text(heap_notebook(50, 1))
    print("bench: docker engine, 50 MB heap: checkpoint ...", file=sys.stderr)
    _, rec = run_json(heap, env, "docker")
    dumps = rec["stats"]["dump_seconds"]  # type: ignore[index]
    restores = []
    for tweak in (2, 3, 4):
        heap.write_text(heap_notebook(50, tweak))
        print(f"bench: docker engine, 50 MB heap: restore {tweak - 1} ...", file=sys.stderr)
        _, rec = run_json(heap, env, "docker")
        restores.append(float(rec["stats"]["restore_seconds"]))  # type: ignore[index]
    return [
        (
            "docker: checkpoint + commit, ~50 MB heap",
            ms(float(dumps[0])),
            "`docker checkpoint create` alone: ~1.2 s",
        ),
        (
            "docker: restore into a new container, ~50 MB heap (median of 3)",
            ms(statistics.median(restores)),
            "target < 1 s",
        ),
    ]


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="tonic-bench-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, TONIC_CACHE=str(work / "cache"))
        # As installed by pip: with compiled bytecode (some sandboxes turn it off).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([*TONIC, "--version"], check=True, env=env, capture_output=True)
        nb = work / "slow.js"
        cells, per_cell = 20, 0.5

        # -- 1. edit the last cell -------------------------------------------------
        nb.write_text(slow_notebook(cells, per_cell, 0))
        print("bench: first criu run of the 20-cell notebook (about 10 s) ...", file=sys.stderr)
        _, record = run_json(nb, env, "criu")
        stats = record["stats"]
        assert isinstance(stats, dict)
        dumps_small = stats["dump_seconds"]
        resumes, nodes, replays = [], [], []
        restores, last_dumps = [], []
        for edit in range(1, 4):
            nb.write_text(slow_notebook(cells, per_cell, edit))
            print(f"bench: edit {edit}: node, replay, criu ...", file=sys.stderr)
            nodes.append(timed(["node", str(nb)], env)[0])
            replays.append(timed([*TONIC, "run", "--plain", "--engine", "replay", str(nb)], env)[0])
            # --json like the first run: the view's snapshots (which record values) and
            # --plain's are kept apart.
            elapsed, resumed = run_json(nb, env, "criu")
            resumes.append(elapsed)
            rstats = resumed["stats"]
            assert isinstance(rstats, dict)
            restores.append(float(rstats["restore_seconds"]))
            last_dumps.extend(rstats["dump_seconds"])
        t_node, t_replay, t_criu = (statistics.median(x) for x in (nodes, replays, resumes))
        rows.append(("edit last cell: plain `node FILE`", f"{t_node:.2f} s", "1.00x"))
        rows.append(
            (
                "edit last cell: tonic, replay engine",
                f"{t_replay:.2f} s",
                f"{t_replay / t_node:.2f}x",
            )
        )
        rows.append(
            (
                "edit last cell: tonic, criu engine (resume)",
                f"{t_criu:.2f} s",
                f"{t_criu / t_node:.3f}x",
            )
        )
        overhead = t_criu - per_cell
        rows.append(
            (
                "resume overhead beyond the 0.5 s cell run (whole `tonic run` command)",
                ms(overhead),
                "target <= 150 ms",
            )
        )
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import tonic.cli"], check=True, env=env)
        startup = time.monotonic() - started
        rows.append(("  of which Python start and imports", ms(startup), ""))
        rows.append(
            ("  of which restoring the snapshot of cells 1-19", ms(statistics.median(restores)), "")
        )
        rows.append(
            (
                "  of which the snapshot after the edited cell",
                ms(statistics.median(last_dumps)) if last_dumps else "none",
                "",
            )
        )
        rows.append(
            (
                "checkpoint per cell, small heap (median)",
                ms(statistics.median(dumps_small)),  # type: ignore[arg-type]
                f"RSS {statistics.median(stats['rss_bytes']) / 2**20:.0f} MiB",  # type: ignore[arg-type]
            )
        )

        # -- 2. checkpoint and restore at 50 and 500 MB --------------------------------
        for mb in (50, 500):
            heap = work / f"heap{mb}.js"
            heap.write_text(heap_notebook(mb, 1))
            before = cache_bytes(env)
            print(f"bench: {mb} MB heap: checkpoint ...", file=sys.stderr)
            _, rec = run_json(heap, env, "criu")
            st = rec["stats"]
            assert isinstance(st, dict)
            stored = cache_bytes(env) - before
            rss = st["rss_bytes"]
            dumps = st["dump_seconds"]
            assert isinstance(rss, list) and isinstance(dumps, list)
            heap.write_text(heap_notebook(mb, 2))
            print(f"bench: {mb} MB heap: restore ...", file=sys.stderr)
            _, rec2 = run_json(heap, env, "criu")
            st2 = rec2["stats"]
            assert isinstance(st2, dict)
            rows.append(
                (
                    f"checkpoint, ~{mb} MB heap (RSS {rss[0] / 2**20:.0f} MiB)",
                    ms(float(dumps[0])),
                    "target <= 80 ms" if mb == 50 else "",
                )
            )
            rows.append((f"restore, ~{mb} MB heap", ms(float(str(st2["restore_seconds"]))), ""))
            share = stored / len(rss) / statistics.mean(rss)
            rows.append(
                (
                    f"stored per snapshot, ~{mb} MB heap",
                    f"{stored / len(rss) / 2**20:.1f} MiB",
                    f"{share:.0%} of RSS (target <= 20%)",
                )
            )
        rows.extend(docker_rows(work, env))
        rows.extend(precommit_rows(work, env))
        total = cache_bytes(env)
        rows.append(("whole cache after the bench", f"{total / 2**20:.1f} MiB", ""))
        subprocess.run([*TONIC, "cache", "clear"], env=env, capture_output=True, check=False)

    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value | note |")
    print(f"| {'-' * width} | --- | --- |")
    for name, value, note in rows:
        print(f"| {name.ljust(width)} | {value} | {note} |")


if __name__ == "__main__":
    main()
