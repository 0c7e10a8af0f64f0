#!/usr/bin/env python3
"""Writes deploy/seccomp-io_uring.json: a seccomp profile in Docker's format that
allows what Docker's default profile allows an unprivileged container, plus
io_uring_setup, io_uring_enter and io_uring_register (which recent Docker versions
refuse). The system calls come from the kernel headers' table (x86_64), less the ones
Docker's default profile refuses without added capabilities (Docker's documentation,
"Seccomp security profiles for Docker", lists them).

    python3 deploy/container/make-seccomp-profile.py /usr/include/x86_64-linux-gnu/asm/unistd_64.h
"""
import json, re, sys

REFUSED = """
acct add_key bpf chroot clock_adjtime clock_settime create_module delete_module
finit_module fsconfig fsmount fsopen fspick get_kernel_syms get_mempolicy init_module
ioperm iopl kcmp kexec_file_load kexec_load keyctl lookup_dcookie mbind mount
mount_setattr move_mount move_pages name_to_handle_at nfsservctl open_by_handle_at
open_tree perf_event_open pivot_root process_vm_readv process_vm_writev ptrace
putpmsg getpmsg afs_syscall tuxcall security vserver query_module quotactl quotactl_fd
reboot request_key set_mempolicy setns settimeofday stime swapoff swapon sysfs _sysctl
syslog umount umount2 unshare uselib userfaultfd ustat vhangup vm86 vm86old
""".split()
IO_URING = ["io_uring_setup", "io_uring_enter", "io_uring_register"]

header = open(sys.argv[1]).read()
names = sorted(set(re.findall(r"#define __NR_(\w+)\s+\d+", header)))
allowed = sorted(n for n in names if n not in REFUSED and n != "clone3")
for n in IO_URING:
    assert n in allowed, n
profile = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": [n for n in allowed if n not in IO_URING], "action": "SCMP_ACT_ALLOW"},
        {"names": IO_URING, "action": "SCMP_ACT_ALLOW",
         "comment": "epro-ingest: every shard is a glommio executor on io_uring"},
        # As Docker does: glibc falls back to clone when clone3 is not implemented.
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}
out = "deploy/seccomp-io_uring.json"
with open(out, "w") as f:
    json.dump(profile, f, indent=2)
    f.write("\n")
print(f"{out}: {len(allowed)} system calls allowed")
