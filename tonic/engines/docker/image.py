"""The docker engine's default image, made from the host's own node (no registry needed).

The root filesystem holds node and the shared libraries `ldd` lists for it, `/bin/sh`
(with its libraries), the user and group files and the local time zone: each at the
same absolute path as on the host, through the same symlinks (merged /usr included), so
that `process.execPath`, `os.userInfo()` and stack traces read as under plain node. It
is packed with `tarfile`, imported through the Engine API as `tonic-node:<hash>`, where
the hash covers every file packed, and built once: later runs find it by its tag.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tonic.engines.docker.api import Docker
from tonic.errors import DockerError
from tonic.settings import node_binary
from tonic.store import private_file

REPOSITORY = "tonic-node"
BUILDER_VERSION = "2"  # bump when the image's layout or its hash changes
SHELL = "/bin/sh"
ETC_FILES = ("/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/localtime")
DIRS = ("/tmp", "/run", "/root")
MEMO = "docker-image.json"
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binary: str) -> list[str]:
    """The absolute paths `ldd` lists for `binary` (its loader included)."""
    try:
        out = subprocess.run(
            ["ldd", binary], capture_output=True, text=True, check=False, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DockerError(f"cannot list the libraries of {binary}: {err}") from None
    return [m.group(1) for m in _LDD_PATH.finditer(out)]


def host_files(node: str) -> list[str]:
    """Every host path the image holds a copy of (before symlinks are followed)."""
    paths = [node, *shared_libraries(node), SHELL, *shared_libraries(SHELL)]
    paths += [p for p in ETC_FILES if os.path.lexists(p)]
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(os.path.abspath(p), None)
    return list(seen)


class RootFs:
    """A root filesystem being packed: host paths through their symlinks, dirs first."""

    def __init__(self) -> None:
        self.entries: dict[str, tarfile.TarInfo] = {}
        self.sources: dict[str, str] = {}  # tar name -> host file with the content

    def _dir(self, path: str) -> None:
        """A directory with the host's mode and owner (0755, root, if it has none)."""
        name = path.lstrip("/")
        if name and name not in self.entries:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            with contextlib.suppress(OSError):
                st = os.stat(path)
                info.mode, info.uid, info.gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
            self.entries[name] = info

    def add_dir(self, path: str) -> None:
        """A directory, and its parents, made as on the host (symlinked ones as symlinks)."""
        self.add(path, directory=True)

    def add(self, path: str, directory: bool = False) -> None:
        """Host `path` at the same place, with every symlink on the way to it."""
        parts = Path(os.path.abspath(path)).parts[1:]
        current = "/"
        for i, part in enumerate(parts):
            here = os.path.join(current, part)
            last = i == len(parts) - 1
            if os.path.islink(here):
                target = os.readlink(here)
                name = here.lstrip("/")
                if name not in self.entries:
                    info = tarfile.TarInfo(name)
                    info.type = tarfile.SYMTYPE
                    info.linkname = target
                    info.mode = 0o777
                    self.entries[name] = info
                # `current` holds no symlink, so normpath resolves `..` correctly.
                rest = os.path.join(
                    os.path.normpath(os.path.join(current, target)), *parts[i + 1 :]
                )
                self.add(rest, directory)
                return
            if last and not directory:
                if not os.path.isfile(here):
                    raise DockerError(f"cannot pack {here} into the node image: not a file")
                name = here.lstrip("/")
                st = os.stat(here)
                info = tarfile.TarInfo(name)
                info.size = st.st_size
                info.mode = st.st_mode & 0o7777
                info.uid, info.gid = st.st_uid, st.st_gid
                info.mtime = st.st_mtime
                self.entries[name] = info
                self.sources[name] = here
            else:
                self._dir(here)
            current = here

    def add_tree(self, path: str, skip: frozenset[str] = frozenset()) -> None:
        """Host `path` (a file or a whole directory) at the same place, as `add` does;
        inside a directory, symlinks stay symlinks and special files are left out, and
        so are the directories named in `skip` (real paths) and `.git`."""
        if not os.path.isdir(path):
            self.add(path)
            return
        self.add(path, directory=True)
        top = os.path.realpath(path)
        for root, dirs, files in os.walk(top):
            for name in sorted(dirs):
                here = os.path.join(root, name)
                if name == ".git" or here in skip:
                    dirs.remove(name)
                elif os.path.islink(here):
                    self._link(here)
                    dirs.remove(name)
                else:
                    self._entry(here)
            for name in sorted(files):
                here = os.path.join(root, name)
                if os.path.islink(here):
                    self._link(here)
                elif os.path.isfile(here):
                    self._entry(here)

    def _link(self, path: str) -> None:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
        self.entries[info.name] = info

    def _entry(self, path: str) -> None:
        """A directory or regular file as it is on the host (mode, owner, mtime)."""
        st = os.lstat(path)
        info = tarfile.TarInfo(path.lstrip("/"))
        info.mode = st.st_mode & 0o7777
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime
        if os.path.isdir(path):
            info.type = tarfile.DIRTYPE
        else:
            info.size = st.st_size
            self.sources[info.name] = path
        self.entries[info.name] = info

    def digest(self) -> str:
        """A hash of every entry: names, modes, link targets and file contents."""
        h = hashlib.sha256(BUILDER_VERSION.encode())
        for name in sorted(self.entries):
            info = self.entries[name]
            h.update(f"{name}\0{info.type!r}\0{info.mode}\0{info.linkname}\0".encode())
            source = self.sources.get(name)
            if source is not None:
                with open(source, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
        return h.hexdigest()

    def write(self, target: Path) -> None:
        with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.entries, key=lambda n: (n.count("/"), n)):
                info = self.entries[name]
                source = self.sources.get(name)
                if source is None:
                    tar.addfile(info)
                else:
                    with open(source, "rb") as f:
                        tar.addfile(info, f)


def rootfs(node: str) -> RootFs:
    fs = RootFs()
    for path in host_files(node):
        fs.add(path)
    for path in DIRS:
        fs.add_dir(path)
    return fs


@dataclass(frozen=True)
class Built:
    tag: str
    image: str
    seconds: float  # 0 when it was already there
    tar_bytes: int  # 0 when it was already there


def _stamp(paths: list[str]) -> str:
    """What the memoized tag depends on: each packed file's identity and mtime."""
    parts = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        parts.append(f"{p}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join([BUILDER_VERSION, *parts])


def image_tag(node: str | None = None) -> tuple[str, RootFs]:
    """`tonic-node:<hash>` for the host's node (hashing ~100 MB is remembered by file
    identities), and the root filesystem it stands for."""
    node = node or node_binary()
    fs = rootfs(node)
    stamp = _stamp(sorted(set(fs.sources.values())))
    memo = private_file(MEMO)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        remembered = json.loads(memo.read_text())
        if remembered["stamp"] == stamp:
            return str(remembered["tag"]), fs
    tag = f"{REPOSITORY}:{fs.digest()[:16]}"
    with contextlib.suppress(OSError):
        fd = os.open(memo, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"stamp": stamp, "tag": tag}, f)
    return tag, fs


def ensure_image(api: Docker, node: str | None = None) -> Built:
    """The default image for the host's node, built and imported if it is not there yet."""
    tag, fs = image_tag(node)
    found = api.image_id(tag)
    if found is not None:
        return Built(tag, found, 0.0, 0)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tonic-image-"))
    try:
        tar = work / "rootfs.tar"
        fs.write(tar)
        size = tar.stat().st_size
        repository, _, version = tag.partition(":")
        image = api.import_image(
            tar, repository, version, kind="base", changes=(f'CMD ["{SHELL}"]',)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Built(tag, image, time.monotonic() - started, size)


def probe_command(node: str | None = None) -> list[str]:
    """A command for `Docker.check_criu`: an idle node, what the engine checkpoints."""
    return [node or node_binary(), "-e", "setInterval(() => {}, 1 << 30)"]


def ready(api: Docker, node: str | None = None) -> Built:
    """Everything the docker engine needs of the daemon: experimental mode, the default
    image, CRIU on its side (each failure one DockerError line)."""
    api.check()
    built = ensure_image(api, node)
    api.check_criu(built.image, probe_command(node))
    return built
