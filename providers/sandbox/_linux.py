"""Linux calls the sandbox agent needs that the standard library lacks: mounts, namespaces, capabilities,
seccomp, the loopback interface, and un-sharing memory a fork inherited.

Runs inside the sandbox, so it uses the standard library only (ctypes on the C library). Each function
raises OSError with the call and the errno on failure.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import socket
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_libc.capset.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)
_MAP_FAILED = ctypes.c_void_p(-1).value
_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2
_COPY_CHUNK = 1 << 20
_F_SETPIPE_SZ, _F_GETPIPE_SZ = 1031, 1032

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
# The namespaces a sandboxed member gets of its own, in the order they must be entered (user first).
MEMBER_NAMESPACES = (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS), ("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC))

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_SET_SECCOMP, _PR_CAP_AMBIENT = 1, 22, 47
_SECCOMP_MODE_FILTER, _PR_CAP_AMBIENT_CLEAR_ALL = 2, 4
_CAP_V3 = 0x20080522
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 1


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {target}")


def umount_detach(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), f"setns {nstype:#x}")


def die_with_parent(signum: int) -> None:
    _check(_libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PDEATHSIG)")


def drop_capabilities() -> None:
    """Clear every capability (effective, permitted, inheritable, ambient) of this process."""
    header = struct.pack("Ii", _CAP_V3, 0)
    data = bytes(24)
    _check(_libc.capset(header, data), "capset")
    _check(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(CAP_AMBIENT_CLEAR_ALL)")


def load_seccomp(program: bytes) -> None:
    """Add a classic-BPF seccomp filter (as libseccomp exports it) to this process and its descendants."""
    count = len(program) // 8
    buffer = ctypes.create_string_buffer(program, len(program))

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _Prog(count, ctypes.cast(buffer, ctypes.c_void_p))
    _check(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "prctl(SET_SECCOMP)")


def loopback_up() -> None:
    """Bring up ``lo`` in this network namespace (a new one starts with it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def write_id_maps(pid: int, lines: list[tuple[int, int, int]]) -> None:
    """Map ids of the user namespace of ``pid`` (the same lines for uids and gids; setgroups denied)."""
    text = "".join(f"{inside} {outside} {count}\n" for inside, outside, count in lines).encode()
    for name, data in (("setgroups", b"deny"), ("uid_map", text), ("gid_map", text)):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, f"short write to /proc/{pid}/{name}")
        finally:
            os.close(fd)


def setup_disk(size_bytes: int, uid: int, gid: int, shared_dirs_owned: bool = False) -> None:
    """One tmpfs of ``size_bytes`` for this mount namespace's /workspace, /tmp and /dev/shm together, so
    one quota bounds all three and nothing of them is on the host's disk. The workspace belongs to
    ``uid``; /tmp and /dev/shm too when ``shared_dirs_owned`` (a member's private namespace)."""
    staging = "/.disk"
    mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_bytes},mode=0755")
    try:
        for name, mode in (("workspace", 0o700), ("tmp", 0o1777), ("shm", 0o1777)):
            path = f"{staging}/{name}"
            os.mkdir(path)
            os.chmod(path, mode)
            if name == "workspace" or shared_dirs_owned:
                os.chown(path, uid, gid)
        for name, target in (("workspace", "/workspace"), ("tmp", "/tmp"), ("shm", "/dev/shm")):
            mount(f"{staging}/{name}", target, None, MS_BIND)
    finally:
        umount_detach(staging)


def make_mounts_private() -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def remount_proc_hidden() -> None:
    """Hide every process of another uid from /proc, so members of a sandbox cannot see each other."""
    mount(None, "/proc", None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")


def _shared_mappings() -> list[tuple[int, int, bytes, bytes]]:
    """(start, end, permissions, "dev inode path") of each shared mapping of this process, from /proc/self/maps
    read raw: a fresh fork pays for every object it touches, so only the shared lines are split."""
    fd = os.open("/proc/self/maps", os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 13):
            chunks.append(chunk)
    finally:
        os.close(fd)
    found = []
    for line in b"".join(chunks).split(b"\n"):
        space = line.find(b" ")  # "start-end perms offset dev inode path"; perms end in "s" when shared
        if line[space + 4:space + 5] == b"s":
            span, perms, _offset, backing = line.split(maxsplit=3)
            start, end = span.split(b"-")
            found.append((int(start, 16), int(end, 16), perms[:3], backing))
    return found


def _read_only_file(backing: bytes) -> bool:
    """Whether a mapping's "dev inode path" is a file of the image: opened by its path, it is the mapped file
    (same device and inode) and lies on a read-only mount. No member can write such a file or map it writable
    (opening it for writing fails; the sandbox mounts no file system both read-only and writable), so its
    pages carry nothing from one process to another. Memory shared any other way (anonymous, /dev/zero,
    SysV, memfd) has no such file: its name ends in " (deleted)"."""
    dev, inode, path = (backing.split(maxsplit=2) + [b"", b""])[:3]
    if not path.startswith(b"/") or path.endswith(b" (deleted)"):
        return False
    try:
        major, minor = dev.split(b":")
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError):
        return False
    try:
        st = os.fstat(fd)
        return (st.st_dev == os.makedev(int(major, 16), int(minor, 16)) and st.st_ino == int(inode)
                and bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY))
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)


def unshare_shared_memory() -> None:
    """Give this process a private copy of every shared mapping it inherited (shared memory of the process
    it was forked from would otherwise join it to its siblings); a file of the image, read-only for every
    member, is left as it is."""
    for start, end, perms, backing in _shared_mappings():
        if not _read_only_file(backing):
            _make_private(start, end - start, perms)


def _view(address: int, size: int) -> memoryview:
    return memoryview((ctypes.c_char * size).from_address(address)).cast("B")


def _make_private(start: int, length: int, perms: bytes) -> None:
    """Copy the shared mapping at ``start`` into new private memory, then move that over it. The bytes go
    through a pipe, so the kernel reads them: a page with nothing behind it (a mapped file cut short) fails
    that read (EFAULT) where a copy in this process would die of SIGBUS, and stays zero in the copy."""
    copy = _libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if copy in (None, _MAP_FAILED):
        code = ctypes.get_errno()
        raise OSError(code, f"no room for a private copy of {length} bytes of shared memory: {os.strerror(code)}")
    if perms[0:1] != b"r":  # this process's view only: the mapping is replaced below
        _check(_libc.mprotect(ctypes.c_void_p(start), ctypes.c_size_t(length), mmap.PROT_READ), "mprotect")
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            chunk = fcntl.fcntl(write_end, _F_SETPIPE_SZ, _COPY_CHUNK)
        except OSError:
            chunk = fcntl.fcntl(write_end, _F_GETPIPE_SZ)
        offset = 0
        while offset < length:
            try:
                sent = os.write(write_end, _view(start + offset, min(chunk, length - offset)))
            except OSError:
                offset += mmap.PAGESIZE
                continue
            done = 0
            while done < sent:
                done += os.readv(read_end, [_view(copy + offset + done, sent - done)])
            offset += sent
    finally:
        os.close(read_end)
        os.close(write_end)
    prot = (mmap.PROT_READ if perms[0:1] == b"r" else 0) | (mmap.PROT_WRITE if perms[1:2] == b"w" else 0) | (
        mmap.PROT_EXEC if perms[2:3] == b"x" else 0)
    if _libc.mremap(copy, length, length, _MREMAP_MAYMOVE | _MREMAP_FIXED, start) != start:
        raise OSError(ctypes.get_errno(), f"could not replace the shared mapping at {start:#x}")
    _check(_libc.mprotect(ctypes.c_void_p(start), ctypes.c_size_t(length), prot), "mprotect")
