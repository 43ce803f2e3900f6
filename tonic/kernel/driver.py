"""Starts node with the kernel preloaded and drives it from pause to pause.

The kernel talks over two pipes on its fds 3 (commands, tonic -> kernel) and 4 (events,
kernel -> tonic), in the messages of protocol.py. The notebook's stdout and stderr are
pipes read here; at each pause everything already in them belongs to the cells before it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tonic.errors import EngineError
from tonic.kernel import winsize
from tonic.kernel.pipes import KernelProcess, Pipes, close_all, end, place_channels, write_all
from tonic.kernel.protocol import GO, Command, encode
from tonic.kernel.relay import Relay
from tonic.kernel.state import Resume, RunState
from tonic.kernel.stdio import MERGED, Stdio, open_channels
from tonic.notebook.cells import Notebook
from tonic.notebook.instrument import Instrumented
from tonic.procs import forking, let_signals_through, parent_death_signal
from tonic.results import RunResult, Sink
from tonic.settings import node_argv0, node_binary


def kernel_file(name: str) -> Path:
    return Path(str(resources.files("tonic") / "kernel" / name))


@dataclass(frozen=True)
class Program:
    """What to run: the notebook, how it is instrumented, node's arguments, and the
    environment and working directory it runs with (by default this process's)."""

    notebook: Notebook
    path: Path
    instrumented: Instrumented
    args: tuple[str, ...] = ()
    inspect: bool = False  # record completion values and error descriptions
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), hash=False)
    cwd: Path = field(default_factory=Path.cwd)
    stdin: str | None = None  # the regular file that is stdin (node reads it as its own)
    # what node's stdout and stderr are (default: two pipes)
    stdio: Stdio = field(default_factory=Stdio)


# A pause hook sees the cell index and returns the command to answer the pause with.
PauseHook = Callable[[int], Command]
# A launcher starts the kernel with the given pipes (fds in tonic's process) and plan.
Launcher = Callable[[Program, Pipes, dict[str, str]], KernelProcess]


def go_on(_cell: int) -> Command:
    """The pause hook of a run without snapshots: every pause is answered with "go"."""
    return GO


def spawn(
    argv: list[str],
    program: Program,
    pipes: Pipes,
    env: dict[str, str],
    prepare: Callable[[], None],
    what: str,
    *,
    stdin: int | None = None,
    keep: tuple[int, ...] = (),
    executable: str | None = None,
) -> subprocess.Popen[bytes]:
    """`argv` (ending in node and the kernel) in the program's working directory, with
    the kernel's pipes as its stdout, stderr and fds 3 and 4 (and the fds in `keep`, at
    their numbers); `prepare` runs between fork and exec, after the channels are in
    place; stdin is tonic's unless `stdin` says otherwise; `executable`: the file run,
    if not argv[0]. `what` names it in the error when it cannot start."""

    def child() -> None:
        let_signals_through()
        place_channels(pipes)
        prepare()

    try:
        with forking():
            return subprocess.Popen(
                argv,
                executable=executable,
                stdin=stdin,
                stdout=pipes.stdout,
                stderr=subprocess.STDOUT if pipes.stderr == MERGED else pipes.stderr,
                env=env,
                cwd=program.cwd,
                pass_fds=(3, 4, *keep),
                preexec_fn=child,
            )
    except OSError as err:
        raise EngineError(f"cannot start {what}: {err.strerror}") from None


def popen_launcher(program: Program, pipes: Pipes, env: dict[str, str]) -> KernelProcess:
    """node as tonic's child; it dies with tonic, even of SIGKILL (PDEATHSIG)."""
    node, *rest = kernel_argv(program)
    die_with_us = parent_death_signal(signal.SIGKILL)
    argv = [node_argv0(), *rest]
    return spawn(argv, program, pipes, env, die_with_us, f"node ({node})", executable=node)


@dataclass(frozen=True)
class KernelOptions:
    """How a run differs from a plain one (the replay engine's: all defaults).

    `on_pause` answers each pause; `on_hello` hears that the kernel is in place, before
    the notebook's first line (in snapshot runs the kernel waits until it returns);
    `on_save` keeps what is at a path the notebook is about to change; `launcher` starts
    the process; `env_overrides` are set for node and hidden from the notebook's
    `process.env` again by the kernel.
    `snapshots` asks the kernel for what a snapshot engine needs (how node exited, the
    modules each cell loaded); `clock_shim` says that node runs with the clock shim
    preloaded. `resume`: the launcher restores a kernel blocked at that pause.
    `channels`: the launcher made the kernel's channels itself (FIFOs into a
    container, a standby's): tonic's ends, and the terminals among them.
    """

    on_pause: PauseHook = go_on
    on_hello: Callable[[], object] = lambda: None
    on_save: Callable[[str], None] = lambda _path: None
    launcher: Launcher = popen_launcher
    env_overrides: dict[str, str] = field(default_factory=dict)
    resume: Resume | None = None
    snapshots: bool = False
    clock_shim: bool = False
    channels: Callable[[KernelProcess], Pipes] | None = None
    channel_ptys: dict[int, int] = field(default_factory=dict)  # `channels`' terminals


def kernel_argv(program: Program) -> list[str]:
    """node's command line, with node's path first (started as `node_argv0()`)."""
    return [node_binary(), "-r", str(kernel_file("kernel.js")), str(program.path), *program.args]


def write_plan(
    program: Program,
    directory: Path,
    env: dict[str, str | None],
    snapshots: bool = False,
    clock_shim: bool = False,
) -> Path:
    """The kernel's instructions, in a private file it reads once at start."""
    plan = {
        "file": str(program.path),
        "kind": program.notebook.kind.kind,
        "typescript": program.notebook.typescript,  # continuations strip types as node does
        "source": program.instrumented.source.decode("utf-8"),
        "values": list(program.instrumented.values),
        "sites": bool(program.instrumented.pauses),  # the kernel binds `__tonic__`
        "inspect": program.inspect,
        "env": env,
        "snapshots": snapshots,
        "shim": clock_shim,
    }
    path = directory / "plan.json"
    path.write_text(json.dumps(plan), encoding="utf-8")
    return path


def _kernel_env(program: Program, directory: Path, options: KernelOptions) -> dict[str, str]:
    """node's environment: the program's, the overrides, and the plan (written to `directory`)
    that tells the kernel what to run and which variables to hide again."""
    env = dict(program.env)
    hidden: dict[str, str | None] = {}
    for name, value in options.env_overrides.items():
        hidden[name] = program.env.get(name)
        env[name] = value
    plan = write_plan(program, directory, hidden, options.snapshots, options.clock_shim)
    env["TONIC_KERNEL_PLAN"] = str(plan)
    return env


def run_kernel(
    program: Program,
    sink: Sink,
    *,
    engine: str,
    timeout: float | None = None,
    options: KernelOptions | None = None,
) -> RunResult:
    """Run the notebook once in a fresh kernel (or, with `options.resume`, a restored
    one); stream to `sink`; return every cell's record."""
    opts = options or KernelOptions()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="tonic-kernel-"))
    os.chmod(tmp, 0o700)
    channels = open_channels(program.stdio)
    ours, kernel_ends, files, ptys = channels.ours, channels.theirs, channels.files, channels.ptys
    theirs: Pipes | None = kernel_ends
    proc: KernelProcess | None = None
    try:
        proc = opts.launcher(program, kernel_ends, _kernel_env(program, tmp, opts))
        close_all(kernel_ends)
        theirs = None
        if opts.channels is not None:
            close_all(ours)
            ours, ptys = opts.channels(proc), dict(opts.channel_ptys)
        # Only now does the sink see anything: a launcher that fails leaves it untouched.
        state = RunState(program, sink, engine, opts.resume, at_once=bool(files))
        if opts.resume is not None:
            for appended in files.values():
                appended.rebase()  # the restored cells' output, which tonic wrote
            if opts.resume.setup is not None:
                write_all(ours.cmd, encode(opts.resume.setup))
            write_all(ours.cmd, encode(opts.resume.command))
        with winsize.following(ptys, proc.pid):
            Relay(proc, state, ours, files, timeout, opts).run()
        if state.result.aborted is not None:
            for appended in files.values():
                appended.rewind()  # it runs again: what it wrote is written again
        code = proc.wait()
        result = state.finish(code if code >= 0 else 128 - code, -code if code < 0 else None)
        result.seconds = time.monotonic() - started
        return result
    finally:
        if proc is not None:
            end(proc)
        if theirs is not None:
            close_all(theirs)
        close_all(ours)
        for appended in files.values():
            appended.close()
        shutil.rmtree(tmp, ignore_errors=True)
