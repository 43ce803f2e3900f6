"""Where the docker engine's time goes: checkpoint and restore of a node process holding
about 50 MB of JS heap in a container, part by part, and variants that could cut it.

    .venv/bin/python bench/docker_parts.py [--heap-mb 50] [--kind objects|buffers] [--reps 3]

Needs a running dockerd (`make docker`) and root. Everything it makes is labeled
`tonic.bench=<id>` and removed at the end. Prints Markdown tables (medians of --reps).

Checkpoint: the daemon's checkpoint call (runc + CRIU dump into a temp folder of
containerd's, containerd tars it into its content store, dockerd reads it back and
unpacks it into the checkpoint folder) against `runc checkpoint` run directly on the same
container (CRIU's own time from its dump.log), and the commit. Restore: creating the
container, placing the checkpoint in its folder, and the daemon's start (dockerd tars the
folder into containerd's content store, containerd unpacks it to a temp folder, runc
restores with CRIU: its own time from restore.log). A light poller of containerd's
content store and the task's bundle folder splits the daemon's share into phases.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tonic.engines.docker import api as dockerapi  # noqa: E402
from tonic.engines.docker import copies as dockercopies  # noqa: E402
from tonic.engines.docker import host as dockerhost  # noqa: E402
from tonic.engines.docker import image as dockerimage  # noqa: E402
from tonic.engines.docker import tree as dockertree  # noqa: E402
from tonic.settings import node_binary  # noqa: E402

TASKS = Path("/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby")

PROGRAM = r"""
const fs = require('fs');
const mb = Number(process.env.BENCH_HEAP_MB);
// bench/run.py's heap (small objects, ~96 bytes each) or research/snapshots.md's (Buffers)
const big = process.env.BENCH_KIND === 'buffers'
  ? Array.from({ length: mb }, (_, i) => Buffer.alloc(1 << 20, i))
  : Array.from({ length: mb * 1024 * 1024 / 96 }, (_, i) => ({ i, s: 'v' + i }));
let n = 0;
const buf = Buffer.alloc(4096);
for (;;) {
  const k = fs.readSync(3, buf, 0, buf.length, null);
  if (k === 0) process.exit(3);
  const [op, arg] = buf.toString('utf8', 0, k).trim().split(' ');
  if (op === 'exit') process.exit(0);
  if (op === 'write') fs.writeFileSync(arg, Buffer.alloc(Number(process.env.BENCH_WRITE || 16), 7));
  n++;
  fs.writeSync(4, JSON.stringify({ n, size: big.length }) + '\n');
}
"""


class Table:
    def __init__(self) -> None:
        self.rows: dict[str, list[float]] = defaultdict(list)
        self.notes: dict[str, str] = {}

    def add(self, name: str, seconds: float) -> None:
        self.rows[name].append(seconds)

    def print(self, title: str) -> None:
        print(f"\n### {title}\n")
        print("| part | median | min | max | n |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, values in self.rows.items():
            ms = [v * 1000 for v in values]
            note = f" ({self.notes[name]})" if name in self.notes else ""
            print(
                f"| {name}{note} | {statistics.median(ms):.0f} ms | {min(ms):.0f} | "
                f"{max(ms):.0f} | {len(ms)} |"
            )


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    got = fn()
    return time.monotonic() - started, got


def talk(kernel: dockertree.ContainerKernel, command: str) -> dict[str, object]:
    ours = kernel.ours
    assert ours is not None
    os.write(ours.cmd, command.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        if not select.select([ours.events], [], [], 60)[0]:
            raise SystemExit("the program did not answer")
        chunk = os.read(ours.events, 65536)
        if not chunk:
            raise SystemExit("the program's event FIFO closed")
        data += chunk
    return dict(json.loads(data))


def tree_rss(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
    return total


def log_seconds(log: Path) -> float:
    """CRIU's own duration: the timestamp of its log's last line, `(SS.uuuuuu) ...`."""
    last = log.read_text(errors="replace").strip().splitlines()[-1]
    return float(last[1 : last.index(")")])


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Poller:
    """Records when containerd's content store gets a new ingest and blob, and when a
    task's bundle folder and its init.pid appear (polled every half millisecond)."""

    def __init__(self, content: Path, bundle: Path | None = None) -> None:
        self.content = content
        self.bundle = bundle
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._blobs = set(self._list("blobs/sha256"))

    def _list(self, sub: str) -> list[str]:
        try:
            return os.listdir(self.content / sub)
        except OSError:
            return []

    def _mark(self, what: str) -> None:
        self.seen.setdefault(what, time.monotonic() - self.t0)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._list("ingest"):
                self._mark("ingest")
            if set(self._list("blobs/sha256")) - self._blobs:
                self._mark("blob")
            if self.bundle is not None:
                if self.bundle.exists():
                    self._mark("bundle")
                if (self.bundle / "init.pid").exists():
                    self._mark("init.pid")
            time.sleep(0.0005)

    @contextlib.contextmanager
    def running(self) -> Iterator[Poller]:
        self.t0 = time.monotonic()
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


class Bench:
    def __init__(self, heap_mb: int, reps: int, kind: str) -> None:
        self.api = dockerapi.Docker.connect()
        self.built = dockerimage.ready(self.api)
        self.labels = {"tonic.bench": uuid.uuid4().hex[:12]}
        self.heap_mb = heap_mb
        self.reps = reps
        self.kind = kind
        self.what = f"{heap_mb} MB of {'Buffers' if kind == 'buffers' else 'JS objects'}"
        self.work = Path(tempfile.mkdtemp(prefix="tonic-bench-docker-", dir="/var/tmp"))
        self.shm = Path(tempfile.mkdtemp(prefix="tonic-bench-docker-", dir="/dev/shm"))
        # On the daemon root's own mount, where checkpoints can be hard-linked into place.
        self.near = Path(tempfile.mkdtemp(prefix="tonic-bench-", dir=self.api.root_dir() / "tmp"))
        self.project = self.work / "project"
        self.project.mkdir()
        (self.project / "heap.js").write_text(PROGRAM)
        self.image = dockertree.layer(
            self.api, self.built.image, [self.project], labels=self.labels
        )
        self.content = self.api.root_dir() / "containerd/daemon/io.containerd.content.v1.content"

    def close(self) -> None:
        self.api.remove_labeled(self.labels)
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)
        shutil.rmtree(self.near, ignore_errors=True)

    def dir(self, where: str) -> Path:
        base = {"tmpfs": self.shm, "disk": self.work, "docker root": self.near}[where]
        return Path(tempfile.mkdtemp(dir=base))

    def start(self, table: Table | None = None) -> dockertree.ContainerKernel:
        env = dict(os.environ, BENCH_HEAP_MB=str(self.heap_mb), UV_USE_IO_URING="0")
        env["BENCH_KIND"] = self.kind
        argv = [node_binary(), str(self.project / "heap.js")]
        kernel = dockertree.start(
            self.api, self.image, argv, env=env, cwd=str(self.project), labels=self.labels
        )
        talk(kernel, "go")
        if table is not None:
            for part, seconds in kernel.seconds.items():
                table.add(f"fresh start: {part}", seconds)
        return kernel

    def end(self, kernel: dockertree.ContainerKernel) -> None:
        if kernel.ours is not None:
            dockertree.close_pipes(kernel.ours)
        kernel.close()

    # -- image ------------------------------------------------------------------------

    def image_build(self) -> None:
        fs = dockerimage.rootfs(node_binary())
        tar = self.work / "rootfs.tar"
        packed, _ = timed(lambda: fs.write(tar))
        imported, image = timed(
            lambda: self.api.import_image(
                tar, "tonic-node-bench", self.labels["tonic.bench"], labels=self.labels
            )
        )
        size = int(self.api.client.inspect_image(image)["Size"])
        print("\n### Default image\n")
        print(f"- packing the root filesystem (tarfile): {packed * 1000:.0f} ms")
        print(f"- importing it (Engine API import): {imported * 1000:.0f} ms")
        print(f"- tar {tar.stat().st_size / 1e6:.0f} MB, image {size / 1e6:.0f} MB")
        tar.unlink()

    # -- checkpoint ---------------------------------------------------------------------

    def api_checkpoint(self, kernel: dockertree.ContainerKernel, where: str, exit: bool) -> float:
        folder = self.dir(where)
        started = time.monotonic()
        self.api.checkpoint_create(kernel.container, "cp", leave_running=not exit, directory=folder)
        return time.monotonic() - started

    def checkpoint(self) -> dict[str, dockertree.Snapshot]:
        table = Table()
        snapshots: dict[str, dockertree.Snapshot] = {}
        kernel = self.start(table)
        container = kernel.container
        try:
            rss = tree_rss(kernel.pid)
            for i in range(self.reps):
                for where in ("disk", "tmpfs"):
                    table.add(
                        f"daemon checkpoint --leave-running, folder on {where}",
                        self.api_checkpoint(kernel, where, exit=False),
                    )
                for where in ("disk", "tmpfs"):
                    self.runc_checkpoint(kernel, where, table)
                self.runc_checkpoint(kernel, "tmpfs", table, paused=True)
                self.poll_checkpoint(kernel, table)
                talk(kernel, f"write f{i}")
                table.add(
                    "commit (small change, pause)",
                    timed(lambda: self.api.commit(container, labels=self.labels))[0],
                )
                talk(kernel, f"write g{i}")
                table.add(
                    "commit (small change, no pause)",
                    timed(lambda: self.api.commit(container, pause=False, labels=self.labels))[0],
                )
                table.add("files signature (upper folder walk)", timed(kernel.files_signature)[0])
                table.add("docker diff (changes)", timed(lambda: self.api.changes(container))[0])
                for via, where in (("docker", "disk"), ("runc", "disk"), ("runc", "docker root")):
                    talk(kernel, f"write {via}{i}")
                    snap = kernel.checkpoint(self.dir(where), "cp", labels=self.labels, via=via)
                    table.add(
                        f"snapshot = {via} checkpoint + commit, {where}", snap.seconds["total"]
                    )
                    snapshots[f"{via}, {where}"] = snap
                unchanged = kernel.checkpoint(self.dir("disk"), "cp", labels=self.labels)
                table.add(
                    "snapshot, files unchanged (no commit), paused, runc",
                    unchanged.seconds["total"],
                )
            image_bytes = du(snapshots["runc, disk"].checkpoint)
            os.environ["BENCH_WRITE"] = str(20 << 20)
            talk(kernel, "write big")
            table.add(
                "commit (20 MB change, pause)",
                timed(lambda: self.api.commit(container, labels=self.labels))[0],
            )
        finally:
            self.end(kernel)
        for _ in range(self.reps):
            other = self.start()
            try:
                table.add(
                    "daemon checkpoint with exit (container stops), tmpfs",
                    self.api_checkpoint(other, "tmpfs", exit=True),
                )
            finally:
                self.end(other)
        print(
            f"\nnode tree RSS in the container: {rss / 1e6:.0f} MB; "
            f"CRIU images {image_bytes / 1e6:.0f} MB"
        )
        table.print(f"Checkpoint, {self.what}")
        return snapshots

    def runc_checkpoint(
        self, kernel: dockertree.ContainerKernel, where: str, t: Table, paused: bool = False
    ) -> None:
        images, work = self.dir(where), self.dir("tmpfs")
        prefix, why = dockerhost.usable(self.api, kernel.container)
        if prefix is None:
            print(f"runc checkpoint: {why}")
            return
        cmd = [*prefix, "checkpoint", "--leave-running", "--image-path", str(images)]
        cmd += ["--work-path", str(work), kernel.container]
        label = f"folder on {where}" + (", container paused first" if paused else "")
        started = time.monotonic()
        if paused:
            self.api.pause(kernel.container)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        finally:
            if paused:
                self.api.unpause(kernel.container)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            print(f"runc checkpoint failed: {proc.stderr.strip()[-300:]}")
            return
        t.add(f"runc checkpoint --leave-running (direct), {label}", seconds)
        t.add(f"  of which CRIU dump (dump.log), {label}", log_seconds(work / "dump.log"))

    def poll_checkpoint(self, kernel: dockertree.ContainerKernel, table: Table) -> None:
        folder = self.dir("tmpfs")
        poller = Poller(self.content)
        with poller.running():
            self.api.checkpoint_create(kernel.container, "cp", leave_running=True, directory=folder)
            total = time.monotonic() - poller.t0
        seen = poller.seen
        if "ingest" not in seen or "blob" not in seen:
            return
        table.add("traced daemon checkpoint (tmpfs): total", total)
        table.add("  runc + CRIU dump (until containerd's first ingest)", seen["ingest"])
        table.add("  containerd tars it into its content store", seen["blob"] - seen["ingest"])
        table.add("  dockerd reads the blob back and unpacks it", total - seen["blob"])

    # -- restore ------------------------------------------------------------------------

    def restore(self, snapshots: dict[str, dockertree.Snapshot]) -> None:
        table = Table()
        variants: list[tuple[str, dockercopies.Placement]] = [
            ("runc, disk", "copy"),
            ("runc, docker root", "link"),
            ("docker, disk", "copy"),
        ]
        for _ in range(self.reps):
            for key, how in variants:
                self.one_restore(snapshots[key], f"{how} from {key} checkpoint", how, table)
        for _ in range(self.reps):
            self.one_restore(snapshots["runc, disk"], "traced", "copy", table, trace=True)
        table.print(f"Restore into a new container, {self.what}")

    def one_restore(
        self,
        snap: dockertree.Snapshot,
        label: str,
        how: dockercopies.Placement,
        table: Table,
        trace: bool = False,
    ) -> None:
        prepared = dockertree.prepare(self.api, snap, self.labels)
        poller = Poller(self.content, TASKS / prepared.container)
        with poller.running() if trace else contextlib.nullcontext(poller):
            kernel = dockertree.restore(
                self.api, snap, labels=self.labels, prepared=prepared, how=how
            )
        try:
            event = talk(kernel, "go")
            assert event["size"], event
            placed, start = kernel.seconds["place"], kernel.seconds["start"]
            if trace:
                seen = poller.seen
                if {"blob", "bundle", "init.pid"} <= set(seen):
                    table.add("traced docker start --checkpoint: total", start)
                    table.add(
                        "  dockerd tars the folder into containerd's content store",
                        seen["blob"] - placed,
                    )
                    table.add("  containerd unpacks it again", seen["bundle"] - seen["blob"])
                    table.add("  shim + runc restore", seen["init.pid"] - seen["bundle"])
                    table.add("  back to the API caller", start + placed - seen["init.pid"])
                return
            table.add("create the container", prepared.seconds)
            table.add(f"place the checkpoint ({how})", placed)
            table.add("docker start --checkpoint", start)
            log = TASKS / kernel.container / "work" / "restore.log"
            with contextlib.suppress(OSError, ValueError, IndexError):
                table.add("  of which CRIU restore (restore.log)", log_seconds(log))
            table.add("open tonic's FIFO ends", kernel.seconds["open"])
            table.add("remove containerd's leftover copy", kernel.seconds["sweep"])
            total = prepared.seconds + placed + start + kernel.seconds["open"]  # sweep: after
            table.add(f"restore total: {label}", total)
            table.add(f"restore total: {label}, container made ahead", total - prepared.seconds)
        finally:
            self.end(kernel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heap-mb", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--kind", choices=("objects", "buffers"), default="objects")
    args = parser.parse_args()
    bench = Bench(args.heap_mb, args.reps, args.kind)
    try:
        print(f"## docker engine parts (dockerd {bench.api.info().get('ServerVersion')})")
        bench.image_build()
        snapshots = bench.checkpoint()
        bench.restore(snapshots)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
