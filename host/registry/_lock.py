"""The registry's lock: one process writes a registry file. It is taken before anything else the host
starts, so a second host on the same file stops before it starts a provider; a command that embeds a
host takes it before it loads DuckDB, so that its providers start while the rest loads."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from worldrt.errors import Unavailable
from worldrt.providers import private_dir


class RegistryError(Unavailable):
    """The registry file cannot be used (held by another process, corrupt, unwritable, unhealthy)."""


class RegistryLock:
    """``RegistryLock.take(path)``: the exclusive lock of the registry at ``path`` (``PATH.lock``, 0600, naming
    its holder), or RegistryError saying who holds it. ``Registry.open(path, lock=...)`` takes it over."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def take(cls, path: Path) -> RegistryLock:
        private_dir(path.parent)
        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RegistryError(f"{path} is in use by {_holder(lock_path)}; stop it or use that host") from None
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({' '.join(sys.argv[:4])})".encode())
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Let another process have the registry; a second release does nothing."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def _holder(lock_path: Path) -> str:
    try:
        return lock_path.read_text().strip() or "another process"
    except OSError:
        return "another process"
