"""Uids for sandboxed processes, unique on the machine among live ones.

Every member of every sandbox (an instance, a branch, a worker) runs under a uid no other live member
on this machine has, so file modes, signals and per-user kernel state separate them. The ids come from
one range reserved for sandboxes; each daemon holds blocks of it, reserved with an exclusive lock on a
file per block in a root-only folder: a block is free again when its daemon dies, whatever the way.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections import deque
from pathlib import Path

from worldrt.errors import ResourceExhausted

# The range every sandbox id comes from (ids of members' user namespaces map it onto itself).
LOW = 0x6000_0000
BLOCK = 4096
BLOCKS = 0x1000_0000 // BLOCK
HIGH = LOW + BLOCK * BLOCKS
_LOCK_DIRS = (Path("/run/worldrt/uids"), Path("/tmp/.worldrt-uids"))


class UidsExhausted(ResourceExhausted):
    """Every block of sandbox ids is held by a live daemon."""


def _lock_dir() -> Path:
    for path in _LOCK_DIRS:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = path.stat()
            if info.st_uid == os.geteuid() and info.st_mode & 0o077 == 0:
                return path
        except OSError:
            continue
    raise PermissionError(f"no private folder for uid reservations (tried {', '.join(map(str, _LOCK_DIRS))})")


class UidAllocator:
    """Hands out uids of the sandbox range; ``release`` returns one (it is reused last)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: deque[int] = deque()
        self._held: list[int] = []  # lock file descriptors, one per reserved block
        self._dir: Path | None = None

    def _reserve_block(self) -> None:
        self._dir = self._dir or _lock_dir()
        start = (os.getpid() * 7919) % BLOCKS
        for step in range(BLOCKS):
            block = (start + step) % BLOCKS
            fd = os.open(self._dir / f"{block}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held.append(fd)
            base = LOW + block * BLOCK
            self._free.extend(range(base, base + BLOCK))
            return
        raise UidsExhausted(f"all {BLOCKS} blocks of sandbox uids are held by running daemons")

    def take(self) -> int:
        with self._lock:
            if not self._free:
                self._reserve_block()
            return self._free.popleft()

    def take_many(self, count: int) -> list[int]:
        return [self.take() for _ in range(count)]

    def release(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)

    def close(self) -> None:
        with self._lock:
            for fd in self._held:
                os.close(fd)
            self._held.clear()
            self._free.clear()


ALLOCATOR = UidAllocator()
