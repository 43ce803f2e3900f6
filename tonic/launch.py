"""The `tonic` entry point: hand the command to a warm tonic server, else run it here.

Importing tonic's command line and engines costs ~70 ms of every command, more than the
rest of a resumed run together. A warm server (`tonic.server`) has them imported already:
for each command it forks a worker that takes over this process's stdin, stdout and
stderr (passed over a Unix socket), arguments, environment, working directory and umask,
runs the command, and reports the exit status, which we exit with. Signals sent to us
(Ctrl-C, SIGTERM, SIGHUP) are passed on to the worker; if we die, the server ends it.

A server is used only if it was started by the same user from the same tonic files, the
same Python and the same process context (locale, PYTHON* variables, resource limits,
namespaces and cgroup); anything else gets a server of its own, or runs here. With no
server running, the command runs here and (`TONIC_SERVER=auto`, the default, unless $CI
is set) starts one in the background for the next command; it exits after
`TONIC_SERVER_IDLE` seconds (default 600) without work. `TONIC_SERVER=off` never uses or starts one.

This module must stay cheap to import: only built-in modules, no tonic imports. So it
reads `TONIC_SERVER` and `TONIC_RUNTIME_DIR` itself: the one exception to "every setting
is read by tonic.settings", which documents them and uses this module's grammar for them
(`server_mode`, `default_runtime_dir`).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # `signal` would import enum (~3 ms)
import _socket
import _struct
import os
import sys
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

PROTOCOL = "1"
MODES = ("auto", "on", "off")
IDLE_SECONDS = 600.0
# Forwarded to the worker while it runs (SIGPIPE, SIGCHLD and the like are not;
# SIGWINCH is, for a terminal resize to reach the kernel).
FORWARDED = (
    _signal.SIGINT,
    _signal.SIGWINCH,
    _signal.SIGTERM,
    _signal.SIGHUP,
    _signal.SIGQUIT,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
)


def server_mode(value: str | None) -> str:
    """A `$TONIC_SERVER` value: auto (use a server, start one if none; also unset or
    empty), on (use one if running, never start one) or off; unknown values count as off."""
    value = (value or "auto").strip().lower() or "auto"
    if value in ("0", "no", "false"):
        return "off"
    return value if value in MODES else "off"


def mode() -> str:
    """This process's `$TONIC_SERVER` (tonic.settings reads it the same way)."""
    return server_mode(os.environ.get("TONIC_SERVER"))


def in_ci() -> bool:
    """Under CI ($CI set, as GitHub Actions, GitLab CI and most others do), `auto` does
    not start a server: a one-off job would leave it idling (a running one is used)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def default_runtime_dir(xdg: str | None) -> str:
    """Where the servers' sockets live without $TONIC_RUNTIME_DIR: $XDG_RUNTIME_DIR/tonic,
    else /tmp/tonic-UID."""
    return os.path.join(xdg, "tonic") if xdg else f"/tmp/tonic-{os.getuid()}"


def runtime_dir(base: str | None = None) -> str | None:
    """A private folder for the servers' sockets: `base` (the setting), else this
    process's $TONIC_RUNTIME_DIR, else `default_runtime_dir`. None if it is not ours
    alone."""
    if not base:
        base = os.environ.get("TONIC_RUNTIME_DIR") or default_runtime_dir(
            os.environ.get("XDG_RUNTIME_DIR")
        )
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(base)
    except OSError:
        return None
    # Not a symlink, ours, and nobody else's to read or write.
    if (st.st_mode & 0o170000) != 0o040000 or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return base


def _package_state() -> list[str]:
    """tonic's own files (name, size, mtime): a changed tonic needs a new server."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = [here]
    stack = [here]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            for entry in it:
                if entry.name == "__pycache__" or entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    st = entry.stat()
                    out.append(f"{entry.path}:{st.st_size}:{st.st_mtime_ns}")
    out.sort()
    return out


def _context() -> list[str]:
    """What a forked worker would inherit from the server rather than from the client."""
    import resource  # a built-in module, cheap

    out = [
        sys.executable,
        sys.version,
        repr(sys.flags),
        repr(sys.path[1:]),
        str(os.getuid()),
        str(os.getgid()),
        repr(sorted(os.getgroups())),
    ]
    for name, value in sorted(os.environ.items()):
        if name.startswith(("PYTHON", "LC_")) or name in ("LANG", "LANGUAGE"):
            out.append(f"{name}={value}")
    for res in sorted(n for n in dir(resource) if n.startswith("RLIMIT_")):
        out.append(f"{res}={resource.getrlimit(getattr(resource, res))}")
    out.append(f"nice={os.getpriority(os.PRIO_PROCESS, 0)}")
    for ns in ("mnt", "pid", "net", "user", "ipc", "uts", "cgroup"):
        try:
            out.append(os.readlink(f"/proc/self/ns/{ns}"))
        except OSError:
            out.append(f"{ns}:?")
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as f:
            out.append(f.read())
    except OSError:
        out.append("cgroup:?")
    # Site packages (a new typer, say): their folders change when packages come and go.
    for entry in sys.path:
        if entry.endswith("-packages"):
            try:  # noqa: SIM105 (contextlib costs ~3 ms of start-up here)
                out.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
            except OSError:
                pass
    return out


def server_tag() -> str:
    """Names the server this process may use: a digest of everything above."""
    text = "\n".join([PROTOCOL, *_context(), *_package_state()]).encode("utf-8", "replace")
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"


def socket_path(directory: str, tag: str) -> str:
    return os.path.join(directory, f"server-{tag}.sock")


def program_name() -> str:
    """What usage lines call us, as click would work it out here."""
    main = sys.modules.get("__main__")
    package = getattr(main, "__package__", None)
    spec = getattr(main, "__spec__", None)
    if package and spec is not None:
        name = spec.name
        if name.endswith(".__main__"):
            name = name[: -len(".__main__")]
        return f"python -m {name}"
    return os.path.basename(sys.argv[0]) or "tonic"


def encode_request(argv: list[str]) -> bytes:
    """The run request: NUL-separated fields, environment last."""
    umask = os.umask(0)
    os.umask(umask)
    fields = [
        b"run",
        os.fsencode(os.getcwd()),
        str(umask).encode(),
        os.fsencode(program_name()),
        str(len(argv)).encode(),
        *(os.fsencode(a) for a in argv),
    ]
    fields.extend(k + b"=" + v for k, v in os.environb.items())
    return b"\0".join(fields)


def send_message(sock: _socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    data = len(payload).to_bytes(8, "big") + payload
    if fds:
        sent = sock.sendmsg(
            [data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack(f"{len(fds)}i", *fds))]
        )
        data = data[sent:]
    while data:
        sent = sock.send(data)
        data = data[sent:]


class _Forwarder:
    """Our signal handlers while a worker runs the command: pass the signal on."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock

    def send(self, signum: int) -> None:
        try:  # noqa: SIM105
            self.sock.send(b"K%d\n" % signum)
        except OSError:
            pass

    def __call__(self, signum: int, _frame: object) -> None:
        self.send(signum)

    def suspend(self, _signum: int, _frame: object) -> None:
        """Ctrl-Z: stop the worker, then ourselves; when we are continued (fg, bg), so is
        the worker."""
        self.send(_signal.SIGSTOP)
        _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGTSTP)  # returns once we get SIGCONT
        _signal.signal(_signal.SIGTSTP, self.suspend)
        self.send(_signal.SIGCONT)


def _stdio_ok() -> bool:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return False
    return True


def sun_path(path: str) -> tuple[str, int]:
    """An address for socket `path` that fits a socket address's 108 bytes: the path
    itself, or its name under /proc/self/fd/N, N its folder opened here (to be closed
    after the bind or connect; -1: nothing opened)."""
    if len(os.fsencode(path)) < 100:
        return path, -1
    folder, name = os.path.split(path)
    fd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{name}", fd


def connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    fd = -1
    try:
        address, fd = sun_path(path)
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return sock


def serve_here(argv: list[str], directory: str, tag: str) -> int | None:
    """Run `argv` on the warm server; its exit status, or None if there is none to use.

    A negative status is a signal that ended the worker."""
    if not _stdio_ok():
        return None
    sock = connect(socket_path(directory, tag))
    if sock is None:
        return None
    try:
        request = encode_request(argv)
    except OSError:  # e.g. our working directory was removed
        sock.close()
        return None
    try:
        try:
            send_message(sock, request, [0, 1, 2])
            lines = _lines(sock)
            first = next(lines, b"")
        except OSError:
            return None
        except KeyboardInterrupt:
            # Before the worker started (or just as it did: the server ends it with us).
            sys.stderr.write("tonic: interrupted\n")
            return 130
        if not first.startswith(b"P"):
            return None  # the server refused (stale or stopping): run here
        # From here on the command runs there: never run it a second time here.
        forward = _Forwarder(sock)
        for signum in FORWARDED:
            _signal.signal(signum, forward)
        _signal.signal(_signal.SIGTSTP, forward.suspend)
        for line in lines:
            if line.startswith(b"X"):
                return int(line[1:])
            if line.startswith(b"S"):
                return -int(line[1:])
        sys.stderr.write("tonic: error: the tonic server stopped during the command\n")
        return 1
    finally:
        sock.close()


def _lines(sock: _socket.socket) -> Iterator[bytes]:
    """Newline-separated messages from `sock`."""
    buf = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except InterruptedError:
            continue
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line


def exit_with(status: int) -> None:
    """Exit with `status`; a negative one is a signal: die of it, as node (or the worker
    running the command) did."""
    sys.stdout.flush()
    sys.stderr.flush()
    if status < 0:
        sig = -status
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP):  # these have no handler to reset
            _signal.signal(sig, _signal.SIG_DFL)
        _no_core()  # node dumped its own core, if the limit let it: not one of ours too
        os.kill(os.getpid(), sig)
        status = 128 + sig
    sys.exit(status)


def _no_core() -> None:
    import resource  # a built-in module, cheap

    try:  # noqa: SIM105
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        pass


def spawn_server(directory: str, tag: str, stderr: int | None = None) -> subprocess.Popen[bytes]:
    """Start a server for `tag` in the background; it outlives us (a session of its own).
    Its stderr goes to `stderr` (default: nowhere). Raises OSError."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-P", "-m", "tonic.server", directory, tag],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stderr is None else stderr,
        cwd="/",
        start_new_session=True,
    )


def only_help(argv: list[str]) -> bool:
    """Nothing to run: no command, or a request for help or the version (a server would
    start for nothing)."""
    return not argv or any(arg in ("--help", "-h", "--version") for arg in argv)


def main() -> None:
    argv = sys.argv[1:]
    how = mode()
    if how != "off" and argv[:1] != ["server"]:
        directory = runtime_dir()
        if directory is not None:
            tag = server_tag()
            status = serve_here(argv, directory, tag)
            if status is not None:
                exit_with(status)
            if how == "auto" and not in_ci() and not only_help(argv):
                try:  # noqa: SIM105
                    spawn_server(directory, tag)
                except OSError:
                    pass  # no server: every command runs in its own process, as before
    from tonic.cli import main as cli_main

    cli_main()
