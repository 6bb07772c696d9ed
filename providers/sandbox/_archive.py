"""Disk archives of members: a tar stream a member writes into a pipe, kept by the daemon in a file.

The member archives its own disk inside the sandbox (as itself), so the daemon never reads a path the
sandbox can change; the daemon only copies bytes from the pipe into a file of its own, and stops at the
limit it sets (never at a size the sandbox claims). Restoring hands the member a read-only descriptor
of that file; the member unpacks it inside its own namespaces.
"""

from __future__ import annotations

import os
from pathlib import Path

from worldrt.errors import ResourceExhausted
from worldrt.providers.sandbox._process import SandboxFault
from worldrt.providers.sandbox._readiness import ready

# A tar stream of a disk of N bytes is at most this much larger (headers and the end-of-archive record).
OVERHEAD_BYTES = 4 * 1024 * 1024


class ArchiveTooLarge(SandboxFault, ResourceExhausted):
    """A member's archive ran past the limit the daemon allows for its disk."""


class ArchiveStore:
    """Archive files in one folder (private to the daemon), within a total budget of bytes."""

    def __init__(self, folder: Path, budget_bytes: int) -> None:
        self.folder = folder
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._sizes: dict[str, int] = {}

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.tar"

    async def receive(self, name: str, pipe_fd: int, limit_bytes: int) -> int:
        """Copy what arrives on ``pipe_fd`` (consumed) into the archive ``name`` until the writer closes
        it; return its size. Past ``limit_bytes`` or the store's budget, stop and raise ArchiveTooLarge."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        room = min(limit_bytes, self.budget_bytes - self.used_bytes)
        out = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.set_blocking(pipe_fd, False)
        total = 0
        try:
            while True:
                try:
                    chunk = os.read(pipe_fd, 1 << 20)
                except BlockingIOError:
                    await ready(pipe_fd)
                    continue
                if not chunk:
                    break
                total += len(chunk)
                if total > room:
                    raise ArchiveTooLarge(
                        f"the disk archive passed {room} bytes, the limit for this disk (a sparse file counts at its "
                        f"full size)" if room == limit_bytes
                        else f"snapshots on this daemon hold {self.used_bytes} bytes, near their budget of "
                             f"{self.budget_bytes}: release some (Stop a snapshot id)")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
        except BaseException:
            os.close(out)
            self.path(name).unlink(missing_ok=True)
            raise
        finally:
            os.close(pipe_fd)
        os.close(out)
        self._sizes[name] = total
        self.used_bytes += total
        return total

    def open(self, name: str) -> int:
        """A read-only descriptor of the archive, to hand to a member."""
        return os.open(self.path(name), os.O_RDONLY | os.O_CLOEXEC)

    def drop(self, name: str) -> None:
        self.used_bytes -= self._sizes.pop(name, 0)
        self.path(name).unlink(missing_ok=True)
