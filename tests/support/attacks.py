"""Code a hostile tenant runs, shared by the escape tests and bench/attacks.py."""

from __future__ import annotations

# Appended to an objective, step or infer function: stops or kills its parent, pid 1 and everything it may.
KILL_EVERYTHING = """
import os, signal

def _attack():
    for pid in (os.getppid(), 1):
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    try:
        os.kill(-1, signal.SIGSTOP)
    except OSError:
        pass
"""

# What the seccomp filter must refuse, by name: (x86_64 syscall number, first argument).
SYSCALLS = {"unshare(user|mount)": (272, 0x10000000 | 0x20000), "unshare(user)": (272, 0x10000000),
            "clone(user)": (56, 0x10000000 | 17), "keyctl": (250, 0), "add_key": (248, 0),
            "request_key": (249, 0), "io_uring_setup": (425, 1), "bpf": (321, 0), "ptrace": (101, 0),
            "init_module": (175, 0), "finit_module": (313, -1), "perf_event_open": (298, 0),
            "userfaultfd": (323, 0), "process_vm_readv": (310, 1)}
