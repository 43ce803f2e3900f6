"""The kernel's proc connector (netlink NETLINK_CONNECTOR, CN_IDX_PROC): every fork and
exit on the machine, as they happen, with the kernel's CLOCK_MONOTONIC timestamps. Needs
CAP_NET_ADMIN and the initial network namespace."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
NLMSG_ERROR = 2
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_PIDS = struct.Struct("=IIII")  # fork: parent pid, parent tgid, child pid, child tgid
_HEAD = _NLMSGHDR.size + _CN_MSG.size  # 36
RECV_BUFFER = 32 << 20


@dataclass(frozen=True, slots=True)
class ProcEvent:
    what: int  # PROC_EVENT_FORK or PROC_EVENT_EXIT
    ns: int  # CLOCK_MONOTONIC nanoseconds
    tgid: int  # fork: the child's tgid; exit: the exiting thread's tgid
    pid: int  # fork: the child's pid (== tgid for a new process); exit: the thread's pid
    parent_tgid: int  # fork only (0 for exits)


class Connector:
    """A non-blocking listening socket. `read()` yields the fork and exit events queued
    since the last call; `overflowed` turns true for good when the kernel dropped some."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            try:  # as root, beyond net.core.rmem_max: a fork storm must not overflow it
                self.sock.setsockopt(socket.SOL_SOCKET, 33, RECV_BUFFER)  # SO_RCVBUFFORCE
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
            self.sock.bind((0, 1 << (CN_IDX_PROC - 1)))
            self._send(PROC_CN_MCAST_LISTEN)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.overflowed = False
        self._buf = bytearray(1 << 16)

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send(self, op: int) -> None:
        payload = struct.pack("=I", op)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0)
        hdr = _NLMSGHDR.pack(_HEAD + len(payload), NLMSG_DONE, 0, 0, os.getpid())
        self.sock.send(hdr + cn + payload)

    def read(self) -> Iterator[ProcEvent]:
        buf, recv = self._buf, self.sock.recv_into
        unpack_event, unpack_pids = _EVENT.unpack_from, _PIDS.unpack_from
        while True:
            try:
                n = recv(buf)
            except BlockingIOError:
                return
            except OSError as err:  # ENOBUFS: the kernel dropped messages
                if err.errno == 105:
                    self.overflowed = True
                    continue
                raise
            off = 0
            while off + _HEAD + _EVENT.size <= n:
                length = _NLMSGHDR.unpack_from(buf, off)[0]
                what, _, ns = unpack_event(buf, off + _HEAD)
                if what == PROC_EVENT_FORK:
                    _, ptgid, cpid, ctgid = unpack_pids(buf, off + _HEAD + _EVENT.size)
                    yield ProcEvent(what, ns, ctgid, cpid, ptgid)
                elif what == PROC_EVENT_EXIT:
                    pid, tgid = struct.unpack_from("=II", buf, off + _HEAD + _EVENT.size)
                    yield ProcEvent(what, ns, tgid, pid, 0)
                off += (length + 3) & ~3 if length else n

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self._send(PROC_CN_MCAST_IGNORE)
        except OSError:
            pass
        self.sock.close()
