#!/usr/bin/env python3
"""Run a command with io_uring refused, as container runtimes refuse it.

    seccomp_launcher.py --errno EPERM -- uturnd ...    # Docker 25+, containerd 2.0+
    seccomp_launcher.py --errno ENOSYS -- uturnd ...   # Podman, CRI-O

Installs a seccomp filter (classic BPF through prctl(PR_SET_SECCOMP), no
libseccomp needed) that makes io_uring_setup, io_uring_enter and
io_uring_register fail with the given errno and allows every other system
call, then execs the command (same PID, so callers can signal it). The
filter is inherited by the exec'd program and cannot be removed by it.

The three calls have the same numbers (425, 426, 427) on x86-64 and arm64,
the unified syscall table; a process of another architecture is killed, so
the numbers cannot mean something else. This is a test harness, not a
sandbox: x32 calls (numbers with bit 30 set) are not filtered.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000

# BPF opcodes (linux/bpf_common.h)
BPF_LD_W_ABS = 0x20   # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35      # BPF_JMP | BPF_JGE | BPF_K
BPF_RET_K = 0x06      # BPF_RET | BPF_K

# struct seccomp_data: int nr; __u32 arch; ...
OFFSET_NR = 0
OFFSET_ARCH = 4
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
IO_URING_SETUP, IO_URING_REGISTER = 425, 427


def instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def filter_program(refuse_errno: int) -> bytes:
    arch = AUDIT_ARCH.get(platform.machine())
    if arch is None:
        raise SystemExit(f"seccomp_launcher: unsupported architecture {platform.machine()}")
    prog = [
        instruction(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        instruction(BPF_JEQ_K, 1, 0, arch),                      # our arch: go on
        instruction(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        instruction(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        instruction(BPF_JGE_K, 0, 3, IO_URING_SETUP),            # nr < 425: allow
        instruction(BPF_JGE_K, 2, 0, IO_URING_REGISTER + 1),     # nr > 427: allow
        instruction(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | (refuse_errno & 0xFFFF)),
        instruction(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),         # (not reached)
        instruction(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return b"".join(prog)


def install(refuse_errno: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    code = filter_program(refuse_errno)
    count = len(code) // 8
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(count, ctypes.cast(buf, ctypes.c_void_p))
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def main(argv: list[str]) -> None:
    refuse = errno.EPERM
    args = argv[1:]
    if len(args) >= 2 and args[0] == "--errno":
        refuse = getattr(errno, args[1].upper(), None)
        if refuse is None:
            raise SystemExit(f"seccomp_launcher: unknown errno {args[1]}")
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise SystemExit(__doc__)
    install(refuse)
    os.execvp(args[0], args)


if __name__ == "__main__":
    main(sys.argv)
