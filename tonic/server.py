"""The warm tonic server: tonic imported once, a forked worker per command.

Started in the background by `tonic.launch` (or `tonic server start`) as
`python -P -m tonic.server DIR TAG`. It listens on DIR/server-TAG.sock (DIR is private to
the user), holds DIR/server-TAG.lock while it lives (one server per tag), and exits after
`$TONIC_SERVER_IDLE` seconds (default 600) without a command, when tonic's own files
change, or when asked (`tonic server stop`).

Messages are length-prefixed (8 bytes, big-endian). Requests: `run` (the client's stdin,
stdout and stderr ride along, SCM_RIGHTS; fields: working directory, umask, program name,
argument count, arguments, environment), answered by lines: `P<pid>` once the worker
runs, then `X<code>` (it exited) or `S<signal>` (a signal ended it); the client may send
`K<signal>` lines, which go to the worker, and if it goes away the worker gets SIGTERM.
`status` and `stop`: one line of `key=value` fields.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import selectors
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tonic import launch, settings
from tonic.procs import parent_death_signal

# In a worker: the pid of the server it was forked from (None in any other process).
WORKER_OF: int | None = None


def idle_seconds() -> float:
    """$TONIC_SERVER_IDLE (tonic.settings)."""
    return settings.current().server_idle


def lock_path(directory: str, tag: str) -> str:
    return os.path.join(directory, f"server-{tag}.lock")


def read_message(sock: socket.socket, max_bytes: int = 64 << 20) -> tuple[bytes, list[int]]:
    """One length-prefixed message and the file descriptors that came with it."""
    fds: list[int] = []
    data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(
                int.from_bytes(payload[i : i + 4], sys.byteorder) for i in range(0, usable, 4)
            )
    if len(data) < 8:
        raise ValueError("short message")
    size = int.from_bytes(data[:8], "big")
    if size > max_bytes:
        raise ValueError("message too large")
    body = bytearray(data[8:])
    while len(body) < size:
        chunk = sock.recv(min(1 << 20, size - len(body)))
        if not chunk:
            raise ValueError("message cut short")
        body.extend(chunk)
    return bytes(body[:size]), fds


@dataclass
class Request:
    cwd: bytes
    umask: int
    prog_name: str
    argv: list[str]
    env: dict[bytes, bytes]


def decode_request(body: bytes) -> Request:
    fields = body.split(b"\0")
    if len(fields) < 5 or fields[0] != b"run":
        raise ValueError("not a run request")
    count = int(fields[4])
    argv = [os.fsdecode(a) for a in fields[5 : 5 + count]]
    if len(argv) != count:
        raise ValueError("arguments cut short")
    env: dict[bytes, bytes] = {}
    for item in fields[5 + count :]:
        name, sep, value = item.partition(b"=")
        if sep and name:
            env[name] = value
    return Request(fields[1], int(fields[2]), os.fsdecode(fields[3]), argv, env)


def _std_stream(fd: int, like: io.TextIOWrapper, *, write: bool, line: bool) -> io.TextIOWrapper:
    """A new sys.stdin/stdout/stderr on `fd`, as Python makes them at start-up (encoding,
    errors and `-u` as the server's, which shares the client's locale and PYTHON*)."""
    unbuffered = write and like.write_through  # python -u, PYTHONUNBUFFERED
    raw = open(fd, "wb" if write else "rb", buffering=0 if unbuffered else -1, closefd=False)  # noqa: SIM115
    return io.TextIOWrapper(
        raw,
        encoding=like.encoding,
        errors=like.errors,
        line_buffering=line,
        write_through=bool(unbuffered),
    )


def become_worker(request: Request, fds: list[int]) -> None:
    """In the forked child: take on the client's stdio, place and environment."""
    global WORKER_OF
    WORKER_OF = os.getppid()
    signal.set_wakeup_fd(-1)
    for signum in (
        signal.SIGCHLD,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
    ):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request.cwd)
    os.umask(request.umask)
    os.environ.clear()
    for name, value in request.env.items():
        os.environb[name] = value
    tempfile.tempdir = None
    sys.stdin = _std_stream(0, sys.__stdin__, write=False, line=False)  # type: ignore[arg-type]
    sys.stdout = _std_stream(1, sys.__stdout__, write=True, line=os.isatty(1))  # type: ignore[arg-type]
    sys.stderr = _std_stream(2, sys.__stderr__, write=True, line=True)  # type: ignore[arg-type]
    sys.argv = [request.prog_name, *request.argv]


def run_worker(request: Request, fds: list[int], die_with_server: Callable[[], None]) -> int:
    """Run the command as `tonic ARGV` would, in this (forked) process; its exit code.
    `die_with_server`, prepared in the server: if it dies, the worker gets SIGTERM (and
    cleans up) rather than run on."""
    code: int = 0
    try:
        die_with_server()
        try:
            become_worker(request, fds)
        except OSError as err:
            os.write(2, f"tonic: error: cannot take over the command: {err}\n".encode())
            return 2
        from tonic import cli

        cli.main(request.argv, prog_name=request.prog_name)
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            sys.stderr.write(f"{stop.code}\n")
            code = 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # as the interpreter would: a traceback, status 1
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    import atexit

    atexit._run_exitfuncs()
    return code


@dataclass
class Job:
    pid: int
    conn: socket.socket
    reaped: bool = False


@dataclass
class Server:
    directory: str
    tag: str
    listener: socket.socket
    idle: float
    lock: int
    private_fds: list[int] = field(default_factory=list)
    die_with_server: Callable[[], None] = field(
        default_factory=lambda: parent_death_signal(signal.SIGTERM)
    )
    package: list[str] = field(default_factory=launch._package_state)
    jobs: dict[int, Job] = field(default_factory=dict)
    served: int = 0
    started: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.monotonic)
    stopping: bool = False

    def stale(self) -> bool:
        return launch._package_state() != self.package

    # -- requests ---------------------------------------------------------------------

    def accept(self, sel: selectors.BaseSelector) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_active = time.monotonic()
        fds: list[int] = []
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            uid = int.from_bytes(creds[4:8], sys.byteorder)
            if uid != os.getuid():
                conn.close()
                return
            conn.settimeout(5)
            body, fds = read_message(conn)
            conn.settimeout(None)
            kind = body.split(b"\0", 1)[0]
            if kind == b"status":
                self.reply(conn, self.status())
            elif kind == b"stop":
                self.reply(conn, self.status())
                self.stopping = True
            elif self.stopping:
                # The client runs the command itself. (A changed tonic needs no check
                # here: its clients compute another tag and never reach this server.)
                conn.close()
            else:
                self.start_job(sel, conn, decode_request(body), fds)
                return
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                conn.close()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def reply(self, conn: socket.socket, fields: dict[str, object]) -> None:
        with conn:
            text = " ".join(f"{k}={v}" for k, v in fields.items()) + "\n"
            with contextlib.suppress(OSError):
                conn.sendall(text.encode())

    def status(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "tag": self.tag,
            "served": self.served,
            "running": len(self.jobs),
            "uptime": f"{time.time() - self.started:.0f}",
            "idle_exit": f"{self.idle:.0f}",
        }

    def start_job(
        self, sel: selectors.BaseSelector, conn: socket.socket, request: Request, fds: list[int]
    ) -> None:
        if len(fds) != 3:
            raise ValueError("a run request carries stdin, stdout and stderr")
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                sel.close()
                self.listener.close()
                os.close(self.lock)
                for fd in self.private_fds:
                    os.close(fd)
                for job in self.jobs.values():
                    job.conn.close()
                conn.close()
                code = run_worker(request, fds, self.die_with_server)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        self.served += 1
        self.jobs[pid] = Job(pid, conn)
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ, pid)
        try:
            conn.sendall(b"P%d\n" % pid)
        except OSError:
            self.client_gone(pid)

    def client_message(self, sel: selectors.BaseSelector, pid: int) -> None:
        job = self.jobs.get(pid)
        if job is None:
            return
        try:
            data = job.conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            sel.unregister(job.conn)
            self.client_gone(pid)
            return
        for line in data.split(b"\n"):
            if line.startswith(b"K") and line[1:].isdigit() and not job.reaped:
                with contextlib.suppress(OSError):
                    os.kill(pid, int(line[1:]))

    def client_gone(self, pid: int) -> None:
        """The client died (or hung up): end its worker as SIGTERM would end tonic."""
        job = self.jobs.get(pid)
        if job is not None and not job.reaped:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def reap(self, sel: selectors.BaseSelector) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is None:
                continue
            job.reaped = True
            self.last_active = time.monotonic()
            if os.WIFSIGNALED(status):
                message = b"S%d\n" % os.WTERMSIG(status)
            else:
                message = b"X%d\n" % os.waitstatus_to_exitcode(status)
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(job.conn)
            with job.conn:
                job.conn.setblocking(True)
                with contextlib.suppress(OSError):
                    job.conn.sendall(message)

    # -- the loop -----------------------------------------------------------------------

    def loop(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.private_fds = [wake_r, wake_w]
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, "listen")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        self.reap(sel)
        while not (self.stopping and not self.jobs):
            events = sel.select(timeout=min(5.0, self.idle / 2))
            for key, _ in events:
                if key.data == "listen":
                    self.accept(sel)
                    if self.stopping:
                        sel.unregister(self.listener)
                        self.listener.close()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        while os.read(wake_r, 512):
                            pass
                    self.reap(sel)
                else:
                    self.client_message(sel, key.data)
            idle = not self.jobs and not self.stopping
            # tonic's files are looked at only when nothing happens (a scan of them).
            if idle and (
                time.monotonic() - self.last_active > self.idle or (not events and self.stale())
            ):
                self.stopping = True

    def _stop_signal(self, *_: object) -> None:
        self.stopping = True


def warm_up() -> None:
    """Import what commands use, so that workers start with it all loaded."""
    import tonic.cli
    import tonic.commands.export
    import tonic.commands.run
    import tonic.engines.criu.engine
    import tonic.engines.docker.engine
    import tonic.engines.replay
    import tonic.export.page
    import tonic.notebook.syntax
    import tonic.view

    tonic.cli.command()
    tonic.notebook.syntax.warm()
    tonic.export.page.lexer()


def serve(directory: str, tag: str) -> int:
    lock = os.open(lock_path(directory, tag), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return 0  # another server has this tag
        raise
    path = launch.socket_path(directory, tag)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        warm_up()
        address, fd = launch.sun_path(path)
        try:
            listener.bind(address)
        finally:
            if fd >= 0:
                os.close(fd)
        os.chmod(path, 0o600)
        listener.listen(64)
        Server(directory, tag, listener, idle_seconds(), lock).loop()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        listener.close()
        os.close(lock)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m tonic.server DIR TAG (started by tonic itself)\n")
        return 2
    os.chdir("/")
    try:
        return serve(argv[0], argv[1])
    except OSError as err:  # what `tonic server start` shows: one line
        where = f" ({err.filename})" if err.filename else ""
        sys.stderr.write(f"cannot serve in {argv[0]}: {err.strerror or err}{where}\n")
        return 1


if __name__ == "__main__":
    # Run as `tonic.server`, not as a second copy named __main__ (WORKER_OF is read there).
    from tonic import server as _module

    sys.exit(_module.main(sys.argv[1:]))
