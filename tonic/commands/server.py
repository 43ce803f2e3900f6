"""`tonic server status|start|stop`: the warm servers of this user (see tonic.launch)."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import subprocess
import time
from dataclasses import dataclass

from tonic import launch, settings
from tonic.errors import TonicError

WAIT_SECONDS = 10.0


@dataclass
class ServerInfo:
    socket: str
    fields: dict[str, str]

    @property
    def pid(self) -> int:
        return int(self.fields.get("pid", "0"))


def _directory() -> str:
    directory = launch.runtime_dir(settings.current().runtime_dir)
    if directory is None:
        raise TonicError(
            "no private folder for tonic servers (set $TONIC_RUNTIME_DIR to a folder only "
            "you can use)"
        )
    return directory


def ask(path: str, kind: str) -> ServerInfo | None:
    """Send `kind` (status or stop) to the server at `path`; None if nobody answers."""
    sock = launch.connect(path)
    if sock is None:
        return None
    data = b""
    try:
        sock.settimeout(WAIT_SECONDS)
        launch.send_message(sock, kind.encode())
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        sock.close()
    fields = dict(item.split("=", 1) for item in data.decode().split() if "=" in item)
    return ServerInfo(path, fields) if fields else None


def servers(directory: str) -> list[ServerInfo]:
    found = []
    for path in sorted(glob.glob(os.path.join(directory, "server-*.sock"))):
        info = ask(path, "status")
        if info is not None:
            found.append(info)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child, from `start`) is as good as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def status() -> int:
    directory = _directory()
    found = servers(directory)
    mode = settings.current().server
    print(f"mode: {mode} ($TONIC_SERVER: auto, on or off)")
    if not found:
        print(f"no tonic server running (folder {directory})")
        return 0
    current = launch.server_tag()
    for info in found:
        f = info.fields
        which = "this tonic" if f.get("tag") == current else "another tonic or context"
        print(
            f"server pid {f.get('pid')} ({which}): {f.get('served')} commands served, "
            f"{f.get('running')} running, up {f.get('uptime')} s, exits after "
            f"{f.get('idle_exit')} s idle"
        )
    return 0


def start() -> int:
    directory = _directory()
    tag = launch.server_tag()
    path = launch.socket_path(directory, tag)
    info = ask(path, "status")
    if info is None:
        try:
            proc = launch.spawn_server(directory, tag, stderr=subprocess.PIPE)
        except OSError as err:
            raise TonicError(f"cannot start the tonic server: {err}") from None
        deadline = time.monotonic() + WAIT_SECONDS
        while info is None and time.monotonic() < deadline:
            if proc.poll():  # exit 0: it lost a race to another start, which may still be
                # warming up: wait for that one as for ours
                said = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise TonicError(f"the tonic server did not start: {said.strip()[-300:]}")
            time.sleep(0.02)
            info = ask(path, "status")
        if proc.stderr:
            proc.stderr.close()
        if info is None:
            raise TonicError(f"the tonic server did not answer within {WAIT_SECONDS:.0f} s")
    print(f"tonic server running, pid {info.pid}")
    return 0


def stop() -> int:
    """Stop every server in the folder (each after its running commands), then tidy it."""
    directory = _directory()
    stopped = []
    for info in servers(directory):
        if ask(info.socket, "stop") is None:
            continue
        deadline = time.monotonic() + WAIT_SECONDS
        while _alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(info.pid):
            raise TonicError(
                f"tonic server {info.pid} is still finishing a command; try again later"
            )
        stopped.append(info.pid)
    _tidy(directory)
    if stopped:
        print("stopped tonic server " + ", ".join(f"pid {p}" for p in stopped))
    else:
        print("no tonic server running")
    return 0


def _tidy(directory: str) -> None:
    """Remove the lock and socket files of servers that no longer run (a live server
    holds its lock)."""
    for lock in glob.glob(os.path.join(directory, "server-*.lock")):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            with contextlib.suppress(OSError):
                os.unlink(lock.removesuffix(".lock") + ".sock")
            with contextlib.suppress(OSError):
                os.unlink(lock)
        finally:
            os.close(fd)
