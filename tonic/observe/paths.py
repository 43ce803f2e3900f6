"""The machine's filesystems (which to mark) and directory handles turned into paths.

A handle is resolved with open_by_handle_at through an fd of its filesystem's root and a
readlink of /proc/self/fd/N: the directory's path NOW. The cache (handle -> path) holds
paths as of the position in the event stream being processed: it is filled by
resolutions and by the directory events themselves (mkdir, rename: their target handle
with the path they name, which is how a directory deleted before its events are read is
still named), and emptied whenever any process on the machine renames a directory, so
that no entry can outlive a rename of it or of an ancestor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tonic.observe import fanotify as fan

# Kernel filesystems with no files of a program's (or where fanotify cannot report FIDs).
PSEUDO = frozenset(
    {
        *("proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "devpts", "mqueue", "debugfs"),
        *("tracefs", "securityfs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs"),
        *("autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "nfsd"),
    }
)


@dataclass(frozen=True)
class Mount:
    device: str  # major:minor
    root: str  # the filesystem's folder mounted there ("/" for its own root)
    point: str
    fstype: str


def mounts() -> list[Mount]:
    """/proc/self/mountinfo's mounts, in order."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].encode().decode("unicode_escape")
            found.append(Mount(fields[2], fields[3], point, fields[sep + 1]))
    return found


@dataclass
class Filesystems:
    """The marked filesystems: fsid -> an fd of the filesystem's root (for handles) and
    its mount point, and the mount points that could not be marked, with why."""

    fds: dict[int, int] = field(default_factory=dict)
    points: dict[int, str] = field(default_factory=dict)
    unmarked: dict[str, str] = field(default_factory=dict)
    marked: list[str] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def mark_all(fan_fd: int, mask: int) -> Filesystems:
    """Marks each real filesystem once (FAN_MARK_FILESYSTEM), through a mount of its
    root where there is one, else through its first mount."""
    fss = Filesystems()
    chosen: dict[str, Mount] = {}
    for m in mounts():
        if m.fstype in PSEUDO:
            continue
        if m.device not in chosen or (m.root == "/" and chosen[m.device].root != "/"):
            chosen[m.device] = m
    for m in chosen.values():
        try:
            fsid = os.statvfs(m.point).f_fsid
            fan.fanotify_mark(fan_fd, fan.FAN_MARK_ADD | fan.FAN_MARK_FILESYSTEM, mask, m.point)
        except OSError as err:
            fss.unmarked[m.point] = f"{m.fstype}: {err.strerror or err}"
            continue
        if fsid in fss.fds:
            continue
        try:
            fss.fds[fsid] = os.open(m.point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            fss.unmarked[m.point] = f"{m.fstype}: {err.strerror or err}"
            continue
        fss.points[fsid] = m.point if m.root == "/" else ""
        fss.marked.append(f"{m.point} ({m.fstype})")
    return fss


class Resolver:
    """Directory handles -> absolute paths, cached as the module's docstring says."""

    def __init__(self, fss: Filesystems) -> None:
        self.fss = fss
        self.cache: dict[tuple[int, bytes], tuple[str, bool]] = {}  # -> path, from readlink
        self.resolutions = 0  # open_by_handle_at calls made, for measurements

    def learn(self, fsid: int, handle: bytes, path: str, fresh: bool) -> None:
        self.cache[(fsid, handle)] = (path, fresh)

    def forget_all(self) -> None:
        self.cache.clear()

    def path(self, fsid: int, handle: bytes) -> tuple[str | None, bool]:
        """The directory's path, or None when it cannot be known (deleted, on an unmarked
        filesystem, reached through no mount), and whether it comes from a readlink (the
        path now, which a directory rename not yet processed may have changed)."""
        key = (fsid, handle)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        mount_fd = self.fss.fds.get(fsid)
        if mount_fd is None:
            return None, False
        self.resolutions += 1
        try:
            fd = fan.open_by_handle(mount_fd, handle)
        except OSError:
            return None, False
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None, False
        finally:
            os.close(fd)
        if not path.startswith("/") or path.endswith(" (deleted)"):
            return None, False
        self.cache[key] = (path, True)
        return path, True
