#!/usr/bin/env python3
"""Runs argv[3:] under a seccomp filter built from the Docker-format profile argv[1]
(its syscalls' names, actions and errnos; argument filters are not used there),
with numbers from the kernel header argv[2] (x86_64's asm/unistd_64.h)."""
import ctypes, json, os, re, struct, sys

profile = json.load(open(sys.argv[1]))
numbers = {n: int(v) for n, v in re.findall(r"#define __NR_(\w+)\s+(\d+)", open(sys.argv[2]).read())}
ALLOW, ERRNO = 0x7FFF0000, 0x00050000

def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)

default = ERRNO | profile.get("defaultErrnoRet", 1)
prog = [insn(0x20, 0, 0, 4), insn(0x15, 1, 0, 0xC000003E), insn(0x06, 0, 0, 0),  # not x86_64: kill
        insn(0x20, 0, 0, 0)]
for rule in profile["syscalls"]:
    ret = ALLOW if rule["action"] == "SCMP_ACT_ALLOW" else ERRNO | rule.get("errnoRet", 1)
    for name in rule["names"]:
        if name in numbers:
            prog += [insn(0x15, 0, 1, numbers[name]), insn(0x06, 0, 0, ret)]
prog.append(insn(0x06, 0, 0, default))
code = b"".join(prog)
buf = ctypes.create_string_buffer(code)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
if libc.prctl(38, 1, None, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit("prctl(PR_SET_NO_NEW_PRIVS) failed")
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
    sys.exit("prctl(PR_SET_SECCOMP) failed: errno %d" % ctypes.get_errno())
os.execv(sys.argv[3], sys.argv[3:])
