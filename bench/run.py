"""`make bench`: what time travel buys, measured in one run on this machine.

1. Edit-the-last-cell latency on a 20-cell notebook whose cells take 0.5 s each:
   plain `node FILE`, the replay engine, and the criu engine resuming.
2. Checkpoint and restore time with about 50 MB and 500 MB of JS heap, and restore time
   against memory size from 50 MB to 2 GB (memory.py).
3. Bytes stored per snapshot, against the process tree's resident memory.
4. The edit of the last cell under each node version of the matrix (versions.py).

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

import live  # bench/live.py, beside this file
import memory  # bench/memory.py
import observed  # bench/observed.py
import versions  # bench/versions.py

from tonic.store.ingest import settled

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


def heap_notebook(mb: int, tweak: int, rep: int = 0) -> str:
    """About `mb` MB of JS heap in the first cell; `tweak` changes only the second cell,
    `rep` the first (a new snapshot key: a fresh checkpoint)."""
    # About 64 bytes of heap per small object plus its string.
    count = mb * 1024 * 1024 // 96
    return (
        f"// %% build a heap (bench run {rep})\n"
        f"const big = Array.from({{ length: {count} }}, (_, i) => ({{ i, s: 'v' + i }}));\n"
        "console.log('objects', big.length);\n\n"
        "// %% use it\n"
        f"console.log('sample', big[{tweak}].s);\n"
    )


def timed(
    cmd: list[str], env: dict[str, str], code: int = 0
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """How long `cmd` took; the bench stops when it does not exit with `code`."""
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != code:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
    return elapsed, proc


def run_json(path: Path, env: dict[str, str], engine: str) -> tuple[float, dict[str, object]]:
    elapsed, proc = timed([*TONIC, "run", "--json", "--engine", engine, str(path)], env)
    return elapsed, json.loads(proc.stdout)


def cache_bytes(env: dict[str, str]) -> int:
    _, proc = timed([*TONIC, "cache", "ls", "--json"], env)
    return int(json.loads(proc.stdout)["stored_bytes"])


def cache_row(env: dict[str, str]) -> tuple[str, str, str]:
    """The whole cache after the bench: as `tonic cache ls` reports it, and as du
    measures the folder (plus the docker images ls counts)."""
    _, proc = timed([*TONIC, "cache", "ls", "--json"], env)
    data = json.loads(proc.stdout)
    du = subprocess.run(
        ["du", "-s", "--block-size=1", env["TONIC_CACHE"]], capture_output=True, check=True
    )
    measured = int(du.stdout.split()[0]) + int(data["disk"].get("docker") or 0)
    return (
        "whole cache after the bench: `tonic cache ls` / du (+ docker images)",
        f"{data['total_bytes'] / 2**20:.1f} MiB",
        f"du: {measured / 2**20:.1f} MiB; a plain gc would free "
        f"{data['reclaimable_bytes'] / 2**20:.1f} MiB",
    )


def _startup(code: list[str], env: dict[str, str]) -> float:
    """Median wall time of `python -c CODE` (5 runs)."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "; ".join(code)], check=True, env=env)
        times.append(time.monotonic() - started)
    return statistics.median(times)


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
        "    files: \\.(js|cjs|mjs|ts|cts|mts)$\n"
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
    with tempfile.TemporaryDirectory(prefix="tonic-bench-") as tmp:
        work = Path(tmp)
        runtime = work / "run"
        runtime.mkdir(mode=0o700)
        # tonic's defaults (a warm server), with a cache and server folder of the bench's.
        env = dict(os.environ, TONIC_CACHE=str(work / "cache"), TONIC_RUNTIME_DIR=str(runtime))
        env.pop("TONIC_SERVER", None)
        # As installed by pip: with compiled bytecode (some sandboxes turn it off).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([*TONIC, "--version"], check=True, env=env, capture_output=True)
        try:
            rows = measure(work, env)
        finally:
            subprocess.run([*TONIC, "server", "stop"], env=env, capture_output=True, check=False)

    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value | note |")
    print(f"| {'-' * width} | --- | --- |")
    for name, value, note in rows:
        print(f"| {name.ljust(width)} | {value} | {note} |")


def throw_rows(
    nb: Path, env: dict[str, str], cells: int, per_cell: float
) -> list[tuple[str, str, str]]:
    """The most common edit, a mistake: the last cell now throws. Node's exact report,
    from the snapshot before it (nothing else runs again)."""
    nodes, tonics = [], []
    for edit in range(1, 4):
        print(f"bench: the last cell throws, edit {edit}: node, criu ...", file=sys.stderr)
        nb.write_text(slow_notebook(cells, per_cell, 200 + edit) + f"null.boom{edit};\n")
        t_node, want = timed(["node", str(nb)], env, code=1)
        nodes.append(t_node)
        t_tonic, got = timed([*TONIC, "run", "--plain", "--engine", "criu", str(nb)], env, code=1)
        tonics.append(t_tonic)
        if (got.stdout, got.stderr) != (want.stdout, want.stderr):
            sys.exit("bench: the resumed run that throws differs from node's")
    t_node, t_tonic = statistics.median(nodes), statistics.median(tonics)
    return [
        ("last cell now throws: plain `node FILE`", f"{t_node:.2f} s", "1.00x"),
        (
            "last cell now throws: tonic, criu engine (node's report, resumed)",
            f"{t_tonic:.2f} s",
            f"{t_tonic / t_node:.3f}x (goal: 10x faster than node)",
        ),
    ]


def page_rows(nb: Path, env: dict[str, str], t_node: float) -> list[tuple[str, str, str]]:
    """`tonic export --html` of the unchanged 20-cell notebook: its stored run, nothing
    runs (median of 3, after a first export that records it)."""
    print("bench: static HTML export of the unchanged notebook ...", file=sys.stderr)
    page = nb.with_suffix(".html")
    export = [*TONIC, "export", "--html", str(nb), "-o", str(page)]
    subprocess.run(export, env=env, check=True, capture_output=True)
    seconds = statistics.median(timed(export, env)[0] for _ in range(3))
    return [
        (
            "static HTML export of the unchanged notebook (tonic export --html)",
            f"{seconds:.2f} s",
            f"goal < 0.5 s; {seconds / t_node:.3f}x of `node FILE`",
        )
    ]


def cells_rows(work: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    """A fresh run of many one-line cells: the work per cell must not grow with the
    cells before it (criu against replay; no snapshot is due after such short cells)."""
    rows = []
    for count in (2_000, 50_000):
        nb = work / f"cells{count}.js"
        nb.write_text("\n\n".join(f"let v{i} = {i};" for i in range(count)) + "\n")
        print(f"bench: {count} one-line cells: node, replay, criu ...", file=sys.stderr)
        t_node = timed(["node", str(nb)], env)[0]
        t_replay = timed([*TONIC, "run", "--plain", "--engine", "replay", str(nb)], env)[0]
        t_criu = timed([*TONIC, "run", "--plain", "--engine", "criu", str(nb)], env)[0]
        goal = "2x" if count == 2_000 else "3x"
        rows.append(
            (
                f"fresh run, {count:,} one-line cells: replay, criu (node {t_node:.2f} s)",
                f"{t_replay:.2f} s, {t_criu:.2f} s",
                f"criu {t_criu / t_replay:.2f}x replay (goal: within {goal})",
            )
        )
    return rows


def measure(work: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    # The warm server, as the first command of a session would leave it running.
    subprocess.run([*TONIC, "server", "start"], check=True, env=env, capture_output=True)
    nb = work / "slow.js"
    cells, per_cell = 20, 0.5

    # -- 1. edit the last cell -------------------------------------------------
    nb.write_text(slow_notebook(cells, per_cell, 0))
    print("bench: first criu run of the 20-cell notebook (about 10 s) ...", file=sys.stderr)
    first_seconds, record = run_json(nb, env, "criu")
    stats = record["stats"]
    assert isinstance(stats, dict)
    dumps_small = stats["dump_seconds"]
    resumes, cold, nodes, replays = [], [], [], []
    restores, last_dumps = [], []
    off = dict(env, TONIC_SERVER="off")
    for edit in range(1, 4):
        print(f"bench: edit {edit}: node, replay, criu (served, own process) ...", file=sys.stderr)
        nb.write_text(slow_notebook(cells, per_cell, edit))
        nodes.append(timed(["node", str(nb)], env)[0])
        replays.append(timed([*TONIC, "run", "--plain", "--engine", "replay", str(nb)], env)[0])
        elapsed, resumed = run_json(nb, env, "criu")
        resumes.append(elapsed)
        rstats = resumed["stats"]
        assert isinstance(rstats, dict)
        restores.append(float(rstats["restore_seconds"]))
        last_dumps.extend(rstats["dump_seconds"])
        # The same edit again, by a tonic that imports itself (no warm server), once
        # the served run's snapshot is stored (as it is by the time node and replay ran).
        with settled(work / "cache", nb):
            pass
        nb.write_text(slow_notebook(cells, per_cell, 100 + edit))
        cold.append(run_json(nb, off, "criu")[0])
    t_node, t_replay, t_criu, t_cold = (
        statistics.median(x) for x in (nodes, replays, resumes, cold)
    )
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
            "edit last cell: tonic, criu engine (resume; warm server, the default)",
            f"{t_criu:.2f} s",
            f"{t_criu / t_node:.3f}x",
        )
    )
    rows.append(
        (
            "resume overhead beyond the 0.5 s cell run (whole `tonic run` command)",
            ms(t_criu - per_cell),
            "target <= 150 ms",
        )
    )
    client = _startup(["import tonic.launch"], env)
    rows.append(("  of which starting the client (Python, tonic.launch)", ms(client), ""))
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
            "resume overhead, TONIC_SERVER=off (tonic imports itself each run)",
            ms(t_cold - per_cell),
            # What a resumed `tonic run` imports (the command line alone no longer loads
            # the engines: `tonic --help` needs none of them).
            "Python start and imports: "
            + ms(_startup(["import tonic.cli, tonic.commands.run, tonic.engines"], env)),
        )
    )
    rows.append(
        (
            "checkpoint per cell, small heap (median)",
            ms(statistics.median(dumps_small)),  # type: ignore[arg-type]
            f"RSS {statistics.median(stats['rss_bytes']) / 2**20:.0f} MiB",  # type: ignore[arg-type]
        )
    )

    rows.extend(throw_rows(nb, env, cells, per_cell))
    rows.extend(page_rows(nb, env, t_node))
    rows.extend(
        live.watch_rows(
            nb,
            env,
            lambda n: slow_notebook(cells, per_cell, n),
            per_cell,
            lambda n: f"cell {cells} {n} true",
        )
    )

    # -- 2. checkpoint and restore at 50 and 500 MB (medians of 3) ------------------
    every = dict(env, TONIC_SNAPSHOT_MIN_MS="0")  # a snapshot whatever the restore costs
    for mb in (50, 500):
        heap = work / f"heap{mb}.js"
        dumps: list[float] = []
        restores_mb: list[float] = []
        verifies: list[float] = []
        rss_first: list[int] = []
        stored = 0
        for rep in range(3):
            heap.write_text(heap_notebook(mb, 1, rep))
            before = cache_bytes(env)
            print(f"bench: {mb} MB heap: checkpoint {rep + 1} of 3 ...", file=sys.stderr)
            _, rec = run_json(heap, every, "criu")
            st = rec["stats"]
            assert isinstance(st, dict)
            if rep == 0:
                # Later repetitions share the heap's pages with the first (deduplicated).
                stored = cache_bytes(env) - before
                rss_first = st["rss_bytes"]  # type: ignore[assignment]
            dumps.append(float(st["dump_seconds"][0]))  # type: ignore[index]
            heap.write_text(heap_notebook(mb, 2, rep))
            print(f"bench: {mb} MB heap: restore {rep + 1} of 3 ...", file=sys.stderr)
            _, rec2 = run_json(heap, every, "criu")
            st2 = rec2["stats"]
            assert isinstance(st2, dict)
            restores_mb.append(float(str(st2["restore_seconds"])))
            verifies.append(float(str(st2["verify_seconds"])))
        rows.append(
            (
                f"checkpoint, ~{mb} MB heap (RSS {rss_first[0] / 2**20:.0f} MiB; median of 3)",
                ms(statistics.median(dumps)),
                ("target <= 80 ms; " if mb == 50 else "") + ", ".join(ms(d) for d in dumps),
            )
        )
        rows.append(
            (
                f"restore, ~{mb} MB heap (median of 3)",
                ms(statistics.median(restores_mb)),
                ", ".join(ms(r) for r in restores_mb),
            )
        )
        verify = statistics.median(verifies)
        rows.append(
            (
                f"  of which checking the unpacked images, ~{mb} MB heap",
                ms(verify),
                f"{verify / statistics.median(restores_mb):.0%} of the restore (goal: under 10%)",
            )
        )
        share = stored / len(rss_first) / statistics.mean(rss_first)
        rows.append(
            (
                f"stored per snapshot, ~{mb} MB heap",
                f"{stored / len(rss_first) / 2**20:.1f} MiB",
                f"{share:.0%} of RSS (target <= 20%)",
            )
        )
    rows.extend(memory.memory_rows(work, env))
    rows.extend(
        versions.version_rows(work, env, lambda n: slow_notebook(cells, per_cell, n), per_cell)
    )
    rows.extend(observed.observe_rows(stats, first_seconds))
    rows.extend(observed.hit_rows(work, env))
    rows.extend(observed.crowd_rows(work, env))
    rows.extend(cells_rows(work, env))
    rows.extend(docker_rows(work, env))
    rows.extend(precommit_rows(work, env))
    rows.append(cache_row(env))
    subprocess.run([*TONIC, "cache", "clear"], env=env, capture_output=True, check=False)
    return rows


if __name__ == "__main__":
    main()
