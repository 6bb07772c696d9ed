"""The seccomp filters of a sandbox, built with libseccomp (through pyseccomp, its ctypes bindings).

* The sandbox filter, handed to bubblewrap, holds for every process of the sandbox: no keyrings, no
  io_uring, no bpf, no ptrace or reading another process's memory, no kernel modules or kexec, no
  perf events, no userfaultfd, no handles to files outside the mount namespace, no new mount API, and
  no new namespaces through clone/clone3.
* The member filter, added by the agent to a member before it runs any code, also denies ``unshare``:
  from then on nothing in that member or in what it forks can make a namespace. Only the zygote's own
  helpers (which never run user code) make namespaces, for the branches of a lineage.
"""

from __future__ import annotations

import errno
import functools
import tempfile

import pyseccomp as seccomp

_DENIED = (
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "bpf", "perf_event_open", "userfaultfd",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "name_to_handle_at",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "pivot_root", "swapon", "swapoff", "reboot", "acct", "syslog", "iopl", "ioperm",
    "quotactl", "lookup_dcookie", "vhangup",
)
_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


def _export(flt: seccomp.SyscallFilter) -> bytes:
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


def _deny(flt: seccomp.SyscallFilter, name: str, code: int = errno.EPERM) -> None:
    try:
        flt.add_rule(seccomp.ERRNO(code), name)
    except (ValueError, OSError):
        pass  # a syscall this architecture does not have


@functools.cache
def sandbox_filter() -> bytes:
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in _DENIED:
        _deny(flt, name)
    # clone3 passes its flags in memory a filter cannot read: make the C library fall back to clone.
    _deny(flt, "clone3", errno.ENOSYS)
    for flag in _NAMESPACE_FLAGS:
        flt.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    return _export(flt)


@functools.cache
def member_filter() -> bytes:
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    _deny(flt, "unshare")
    return _export(flt)


DENIED = _DENIED + ("clone3", "clone with namespace flags", "unshare (members)")
