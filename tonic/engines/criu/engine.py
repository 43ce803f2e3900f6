"""The criu engine: a CRIU checkpoint of the kernel's process tree after every cell, and
resume from the longest prefix of cells whose snapshot is still valid (the lifecycle is
engines/snapshots.py's; which snapshot: timetravel/choose.py).

The tree (tree.py) is a PID namespace of its own. libuv must not open an io_uring:
UV_USE_IO_URING=0 (hidden again from the notebook's process.env) and a seccomp filter
that fails io_uring_setup, for node versions that ignore the variable. A watchdog
(watchdog.py) ends the tree if tonic is killed before it can.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tonic import settings
from tonic.engine_catalog import DESCRIPTIONS
from tonic.engines import natives
from tonic.engines.backend import Session
from tonic.engines.base import Availability
from tonic.engines.criu import tool as criu_tool
from tonic.engines.criu import tree as trees
from tonic.engines.criu.lazy import LazyPages
from tonic.engines.criu.watchdog import Watchdog
from tonic.engines.images import Images
from tonic.errors import EngineError
from tonic.kernel.driver import Program
from tonic.kernel.pipes import KernelProcess, Pipes
from tonic.procs import become_subreaper, tree_rss
from tonic.store import Store
from tonic.store.layout import default_root, disk_full
from tonic.timetravel.choose import Choice
from tonic.timetravel.records import SnapshotRecord


def _leftovers(env: dict[str, str]) -> Path | None:
    """The run's private folder (the kernel's plan), for the watchdog to remove."""
    plan = env.get("TONIC_KERNEL_PLAN")
    return Path(plan).parent if plan else None


class CriuKernel:
    """One kernel run: a fresh tree, or one CRIU restored; dumped at the pauses."""

    def __init__(self, criu: criu_tool.Criu, init: Path, lazy: Path | None = None) -> None:
        self.criu = criu
        self.init = init
        # restores copy the memory in as the tree touches it (lazy.py), a daemon with this
        # fix (the built kernel/lazyshim.c) serving it
        self.lazy = lazy
        self.pages: LazyPages | None = None  # serving the restored tree's memory, till all in
        self.restored_lazily = False
        self.problem: str | None = None  # the daemon failed while the tree ran
        self.tree: trees.Tree | None = None
        self.watchdogs: list[Watchdog] = []
        self.dump_seconds: list[float] = []
        self.rss: list[int] = []
        self.held: tuple[int, ...] = ()  # the processes of a tree restored held

    def launch(self, program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
        tree = trees.fresh(program, pipes, env, self.init)
        self.tree = tree
        self.watchdogs.append(Watchdog(tree.init_pid(), _leftovers(env)))
        return tree

    def restore(
        self,
        choice: Choice,
        images: Images,
        pipes: Pipes,
        env: dict[str, str],
        *,
        held: bool = False,
    ) -> KernelProcess:
        names = choice.record.pipes
        ours = {"stdout": pipes.stdout, "stderr": pipes.stderr}
        ours.update(cmd=pipes.cmd, events=pipes.events)
        # A stderr of -1 is stdout's channel, inherited once.
        inherit = {fd: names[role] for role, fd in ours.items() if fd >= 0}
        read, write = trees.status_pipe()
        inherit[write] = names["status"]
        stopped = held or images.pending is not None  # (until the images' check passed)
        pidfile = criu_tool.restored_pidfile(images.scratch)
        watchdog = Watchdog(None, _leftovers(env), restoring=(images.scratch, pidfile, self.init))
        try:
            restored = criu_tool.restore(
                self.criu,
                images.files,
                inherit,
                images.scratch,
                stopped=stopped,
                cancel=images.failed,
                lazy=self.lazy,
            )
        except BaseException:
            watchdog.disarm()  # tonic ended what CRIU made
            os.close(read)
            images.check()  # damaged images explain a failed restore: DamagedImages
            raise
        finally:
            os.close(write)
        pid, self.pages = restored.pid, restored.pages
        self.restored_lazily = restored.pages is not None
        watchdog.watch(pid)
        self.watchdogs.append(watchdog)
        self.tree = trees.restored(pid, read)
        if stopped:
            try:
                images.check()
            except BaseException:
                self.tree.kill()
                self.tree.wait()
                self.tree.status.close()
                self.tree = None
                if self.pages is not None:  # (the tree never ran)
                    self.pages.kill()
                    self.pages = None
                raise
            if held:  # (stopped, they cannot fork: the list stays whole)
                self.held = trees.processes(pid)
            else:
                trees.resume(trees.processes(pid))
        return self.tree

    def resume(self) -> None:
        trees.resume(self.held)
        self.held = ()

    def checkpoint(self, record: SnapshotRecord, folder: Path) -> None:
        assert self.tree is not None
        folder.mkdir(mode=0o700)
        root = self.tree.init_pid()
        if self.pages is not None:  # every page in the tree's memory first
            pages, self.pages = self.pages, None
            try:
                pages.finish(criu_tool.deadline(tree_rss(root)))
            except EngineError as err:
                self._daemon_failed(str(err))
                raise
        record.pipes = trees.pipe_names(root)
        self.rss.append(tree_rss(root))
        external = trees.external_ttys(record.pipes)
        with self.watchdogs[-1].dumping(folder):
            seconds = criu_tool.dump(self.criu, root, folder, external, self.rss[-1])
        self.dump_seconds.append(seconds)

    def tree_pid(self) -> int | None:
        return self.tree.init_pid() if self.tree is not None else None

    def channels(self, proc: KernelProcess) -> Pipes:
        raise AssertionError("the criu engine's kernels use tonic's own pipes")

    def _pages_ended(self) -> None:
        if self.pages is not None:
            problem = self.pages.end()
            self.pages = None
            if problem is not None:
                self._daemon_failed(f"criu lazy-pages failed: {problem}")

    def _daemon_failed(self, problem: str) -> None:
        """Some page of the restored tree may have read as zeros: said on stderr, and
        restores are eager here from now on (for a day)."""
        self.problem = (
            f"{problem}; this run's output may differ from node's (its memory came in "
            "lazily), and restores copy all memory first from now on (TONIC_LAZY_PAGES)"
        )
        criu_tool.lazy_failed(self.criu)

    def close(self) -> dict[str, object]:
        for watchdog in self.watchdogs:  # the kernel has ended: tonic did it
            watchdog.disarm()
        self._pages_ended()
        return {
            "dump_seconds": self.dump_seconds,
            "rss_bytes": self.rss,
            "lazy_pages": self.restored_lazily,
            **({"problem": self.problem} if self.problem else {}),
        }


class CriuBackend:
    name = "criu"
    description = DESCRIPTIONS[name]

    def availability(self) -> Availability:
        criu, why = criu_tool.availability()
        if criu is not None:
            init, problem = natives.init(default_root())
            if init is None and disk_full(default_root()):  # runs without snapshots
                return Availability(True, f"{why}; the cache's disk is full")
            if init is None:
                return Availability(False, f"{problem} (the kernel's namespace needs it)")
        return Availability(criu is not None, why)

    @contextlib.contextmanager
    def open(self, program: Program, store: Store) -> Iterator[Session]:
        criu = criu_tool.require()
        init, why = natives.init(store.root)
        if init is None:
            raise EngineError(f"the criu engine cannot run here: {why}")
        become_subreaper()  # restored trees are detached from criu: they are ours
        lazy = None
        if settings.current().lazy_pages and criu_tool.lazy_supported(criu):
            lazy, _ = natives.lazy_shim(store.root)  # (without it: eager restores)
        yield Session(kernel=lambda: CriuKernel(criu, init, lazy), lazy_restores=lazy is not None)
