"""ctypes bindings of glibc's fanotify calls and `open_by_handle_at`, and the parsing of
fanotify's event records in FID mode (`FAN_REPORT_DFID_NAME | FAN_REPORT_FID |
FAN_REPORT_TARGET_FID`). Linux only; needs CAP_SYS_ADMIN (marks) and CAP_DAC_READ_SEARCH
(handles)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

# fanotify_init flags
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_UNLIMITED_QUEUE = 0x10
FAN_UNLIMITED_MARKS = 0x20
FAN_REPORT_FID = 0x200
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_TARGET_FID = 0x1000
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_REPORT_DFID_NAME_TARGET = FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID

# events
FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_OPEN = 0x20
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_Q_OVERFLOW = 0x4000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_RENAME = 0x10000000
FAN_ONDIR = 0x40000000

# fanotify_mark flags
FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100

# info record types
INFO_FID = 1
INFO_DFID_NAME = 2
INFO_DFID = 3
INFO_OLD_DFID_NAME = 10
INFO_NEW_DFID_NAME = 12

METADATA = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
METADATA_VERSION = 3
_INFO_HEADER = struct.Struct("=BBH")  # info_type, pad, len
_HANDLE_HEADER = struct.Struct("=Ii")  # handle_bytes, handle_type (after the 8-byte fsid)
AT_FDCWD = -100

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]
_libc.fanotify_mark.restype = ctypes.c_int
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_libc.open_by_handle_at.restype = ctypes.c_int


def _raise(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def fanotify_init(flags: int, event_f_flags: int = os.O_RDONLY | os.O_CLOEXEC) -> int:
    fd: int = _libc.fanotify_init(flags, event_f_flags)
    if fd < 0:
        _raise("fanotify_init")
    return fd


def fanotify_mark(fd: int, flags: int, mask: int, path: str) -> None:
    if _libc.fanotify_mark(fd, flags, mask, AT_FDCWD, os.fsencode(path)) < 0:
        _raise(f"fanotify_mark {path}")


def open_by_handle(mount_fd: int, handle: bytes, flags: int = os.O_PATH) -> int:
    """An fd of the object `handle` (a raw struct file_handle) names, opened through
    `mount_fd` (any fd on the same filesystem). Raises OSError (ESTALE when it is gone)."""
    fd: int = _libc.open_by_handle_at(mount_fd, handle, flags | os.O_CLOEXEC)
    if fd < 0:
        _raise("open_by_handle_at")
    return fd


@dataclass(frozen=True, slots=True)
class Fid:
    """One FID-type info record: the filesystem (fsid), the object's handle, and for the
    *_DFID_NAME types the entry's name in that directory ("" for none)."""

    kind: int  # INFO_FID, INFO_DFID_NAME, INFO_DFID, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME
    fsid: int  # val[0] | val[1] << 32, as os.statvfs's f_fsid
    handle: bytes  # struct file_handle: handle_bytes, handle_type, f_handle
    name: str


def info_records(data: bytes | bytearray, start: int, end: int) -> Iterator[Fid]:
    """The info records of the event whose records span data[start:end]."""
    off = start
    while off + 4 <= end:
        kind, _, length = _INFO_HEADER.unpack_from(data, off)
        if length < 4:
            return
        if kind in (INFO_FID, INFO_DFID_NAME, INFO_DFID, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME):
            lo, hi = struct.unpack_from("=II", data, off + 4)
            handle_bytes, _ = _HANDLE_HEADER.unpack_from(data, off + 12)
            hend = off + 12 + 8 + handle_bytes
            name = ""
            if kind in (INFO_DFID_NAME, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME):
                raw = bytes(data[hend : off + length])
                name = os.fsdecode(raw.split(b"\0", 1)[0])
            yield Fid(kind, lo | (hi << 32), bytes(data[off + 12 : hend]), name)
        off += length
