#!/usr/bin/env python3
"""Runs argv[1:] under a seccomp filter that makes io_uring_setup fail with EPERM, as
Docker's default profile does. x86_64 and aarch64 only."""
import ctypes, os, platform, struct, sys

arch = platform.machine()
AUDIT_ARCH, NR = {
    "x86_64": (0xC000003E, 425),
    "aarch64": (0xC00000B7, 425),
}[arch]
EPERM = 1
def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
prog = b"".join([
    insn(0x20, 0, 0, 4),                   # load arch
    insn(0x15, 0, 3, AUDIT_ARCH),          # other arch: allow
    insn(0x20, 0, 0, 0),                   # load syscall number
    insn(0x15, 0, 1, NR),                  # io_uring_setup?
    insn(0x06, 0, 0, 0x00050000 | EPERM),  # SECCOMP_RET_ERRNO | EPERM
    insn(0x06, 0, 0, 0x7FFF0000),          # SECCOMP_RET_ALLOW
])
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
if libc.prctl(38, 1, None, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit("prctl(PR_SET_NO_NEW_PRIVS) failed")
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
    sys.exit("prctl(PR_SET_SECCOMP) failed: errno %d" % ctypes.get_errno())
os.execv(sys.argv[1], sys.argv[1:])
