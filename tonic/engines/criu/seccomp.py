"""Deny io_uring to a process tree, with a seccomp filter installed before exec.

CRIU cannot dump an io_uring, and libuv >= 1.50 opens one whatever UV_USE_IO_URING says.
A filter that fails `io_uring_setup` with ENOSYS makes libuv fall back to epoll, as it
does under Docker's default seccomp profile. The filter is inherited by every child and
kept by CRIU across checkpoint and restore.
"""

from __future__ import annotations

import ctypes
import platform
import struct

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_AUDIT_ARCH_X86_64 = 0xC000003E
_AUDIT_ARCH_AARCH64 = 0xC00000B7
_IO_URING_SETUP = 425  # the same number on x86_64 and aarch64
_ENOSYS = 38

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _program() -> bytes:
    arch = _AUDIT_ARCH_AARCH64 if platform.machine() == "aarch64" else _AUDIT_ARCH_X86_64
    return b"".join(
        [
            _insn(_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
            _insn(_BPF_JEQ_K, 1, 0, arch),
            _insn(_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),  # another ABI: leave it alone
            _insn(_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
            _insn(_BPF_JEQ_K, 0, 1, _IO_URING_SETUP),
            _insn(_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | _ENOSYS),
            _insn(_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        ]
    )


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def deny_io_uring() -> None:
    """Install the filter in this process (call it in a child, before exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    code = _program()
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
