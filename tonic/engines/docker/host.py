"""What tonic does next to the Docker daemon, on its machine: checkpoint a container
with runc directly, tell whether a container's files changed (overlay2's upper folder),
and remove the checkpoint copies containerd leaves behind after restores.

The daemon's own checkpoint moves the CRIU images twice through containerd's content
store (containerd tars runc's folder into it; dockerd reads it back over gRPC, in 32 KiB
round trips, and unpacks it): with 80 MB of images that is 0.9 s of the 1.1 s the call
takes. `runc checkpoint --leave-running` on the same container, with the state root the
daemon's runc uses, writes the same images (runc's folder is what the daemon unpacks)
straight into our folder in about 0.2 s; `docker start --checkpoint` restores them.

It needs the daemon on this machine, root, the daemon's runc and its state root
(`<exec-root>/runtime-runc/moby`), and CRIU >= 4 (tonic's own, handed to runc with
--criu). `usable()` says why not; callers then use the daemon's checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from tonic.engines.criu import tool as criu_tool
from tonic.engines.docker.api import Docker
from tonic.errors import DockerError

STATE_ROOTS = ("/run/docker/runtime-runc/moby", "/var/run/docker/runtime-runc/moby")
# containerd (1.6) unpacks a checkpoint into a temp folder of its own for each restore
# and never removes it: tonic removes its own (and any left for over an hour).
CONTAINERD_PIDFILES = (
    "/run/docker/containerd/containerd.pid",
    "/var/run/docker/containerd/containerd.pid",
)
RESTORE_COPY = "ctrd-checkpoint"
STALE_SECONDS = 3600.0


def runc_binary(api: Docker) -> str | None:
    """The daemon's default runtime binary, if it is runc and on this machine's PATH."""
    info = api.info()
    runtimes = info.get("Runtimes") or {}
    default = runtimes.get(info.get("DefaultRuntime") or "runc") or {}
    path = str(default.get("path") or "runc")
    if os.path.basename(path) != "runc":
        return None
    return shutil.which(path)


def state_root(container: str) -> Path | None:
    """The runc state root that holds the (running) container, or None."""
    for root in STATE_ROOTS:
        if (Path(root) / container / "state.json").exists():
            return Path(root)
    return None


def usable(api: Docker, container: str) -> tuple[list[str] | None, str]:
    """(runc's command prefix, None-reason) to checkpoint `container` directly."""
    if os.geteuid() != 0:
        return None, "runc needs root"
    runc = runc_binary(api)
    if runc is None:
        return None, "the daemon's runtime is not a runc found on this machine"
    root = state_root(container)
    if root is None:
        return None, "the container's runc state is not on this machine"
    criu, why = criu_tool.locate()
    if criu is None:
        return None, why
    return [runc, "--root", str(root), "--criu", criu.path], ""


def checkpoint(prefix: list[str], container: str, folder: Path) -> float:
    """`runc checkpoint --leave-running` of `container` into the new `folder`; seconds."""
    folder.mkdir(mode=0o700)
    work = Path(tempfile.mkdtemp(prefix="tonic-runc-"))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [
                *prefix,
                "checkpoint",
                "--leave-running",
                "--image-path",
                str(folder),
                "--work-path",
                str(work),
                container,
            ],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise DockerError(f"runc checkpoint failed: {_why(work / 'dump.log', proc.stderr)}")
        return time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _why(log: Path, stderr: str) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [ln for ln in lines if "Error" in ln and "RLIMIT_NOFILE" not in ln]
    if errors:
        return errors[-1].strip()
    tail = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return tail[-1] if tail else "no output"


def _same_dir_below(rel: str, st: os.stat_result, lower: list[Path]) -> bool:
    for layer in lower:
        with contextlib.suppress(OSError):
            below = os.lstat(layer / rel)
            return stat.S_ISDIR(below.st_mode) and (below.st_mode, below.st_uid, below.st_gid) == (
                st.st_mode,
                st.st_uid,
                st.st_gid,
            )
    return False


def files_signature(upper: Path, lower: list[Path]) -> str:
    """A digest of a container's own file changes (overlay2's upper folder): every
    file, symlink and whiteout with its size, mode and mtime, and every directory that
    differs from the image's (new, other mode or owner, or opaque). A directory only
    copied up, as CRIU's checkpoints do with /tmp, does not count, nor do its mtimes."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(upper):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, upper)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                opaque = b""
                with contextlib.suppress(OSError):
                    opaque = os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False)
                if not opaque and _same_dir_below(rel, st, lower):
                    continue
                h.update(
                    f"{rel}\0dir\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{opaque!r}\n".encode()
                )
                continue
            h.update(
                f"{rel}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0"
                f"{st.st_mtime_ns}\0{st.st_rdev}\n".encode()
            )
    return h.hexdigest()


def containerd_tmp() -> Path:
    """Where the daemon's containerd makes its temp folders: $XDG_RUNTIME_DIR, else
    $TMPDIR, else /tmp, as its environment has them (/tmp when it is not found)."""
    for pidfile in CONTAINERD_PIDFILES:
        try:
            pid = int(Path(pidfile).read_text().strip())
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        env = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        for name in (b"XDG_RUNTIME_DIR", b"TMPDIR"):
            if env.get(name):
                return Path(os.fsdecode(env[name]))
        break
    return Path("/tmp")


def sweep_restore_copies(inventory: bytes, since: float) -> int:
    """Remove the copy containerd unpacked for a restore that started at `since` (wall
    clock) of the checkpoint whose inventory.img is `inventory`, when it is the only
    one, and every such copy over an hour old. How many it removed."""
    try:
        entries = list(containerd_tmp().glob(RESTORE_COPY + "*"))
    except OSError:
        return 0
    now, removed, mine = time.time(), 0, []
    for entry in entries:
        try:
            modified = entry.stat().st_mtime
            if now - modified > STALE_SECONDS:
                shutil.rmtree(entry)
                removed += 1
            elif modified >= since - 1 and (entry / "inventory.img").read_bytes() == inventory:
                mine.append(entry)
        except OSError:
            continue
    if len(mine) == 1:  # several: a concurrent restore of the same snapshot; leave them
        shutil.rmtree(mine[0], ignore_errors=True)
        removed += 1
    return removed
