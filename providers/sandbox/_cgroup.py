"""Per-process pids cgroups: an exact process bound per instance and a kill that reaches every descendant.

Uses the cgroup v2 ``pids`` controller where it is enabled, else the v1 ``pids`` hierarchy. Without a
writable hierarchy (an unprivileged daemon) ``PidsCgroups.open`` returns None and the sandbox falls back
to RLIMIT_NPROC and process-group kills.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

_CANDIDATES = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/pids"))


def _usable(root: Path) -> bool:
    if (root / "pids.max").exists() or (root / "cgroup.procs").exists() and root.name == "pids":
        return os.access(root, os.W_OK)
    controllers = root / "cgroup.controllers"
    return controllers.exists() and "pids" in controllers.read_text().split() and os.access(root, os.W_OK)


_OWNER = re.compile(r"^worldrt-(?:[a-z]+-)?(\d+)(?:-[a-z0-9]+)?$")


def _remove_orphans(root: Path) -> None:
    for entry in root.iterdir():
        match = _OWNER.match(entry.name)
        if match is None or not entry.is_dir():
            continue
        owner = int(match.group(1))
        try:
            os.kill(owner, 0)
            continue  # its daemon is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        PidsCgroups(entry).close()


class PidsCgroups:
    """A directory of cgroups owned by one daemon: one child cgroup per sandboxed process tree."""

    def __init__(self, base: Path) -> None:
        self.base = base

    @classmethod
    def open(cls, name: str) -> "PidsCgroups | None":
        """A cgroup directory ``name`` (which names the owning daemon's pid) under a usable pids hierarchy.
        Directories left by daemons that died without cleaning up (SIGKILL) are removed first."""
        for root in _CANDIDATES:
            try:
                if not root.is_dir() or not _usable(root):
                    continue
                _remove_orphans(root)
                base = root / name
                base.mkdir(exist_ok=True)
                if (root / "cgroup.controllers").exists():
                    (base / "cgroup.subtree_control").write_text("+pids")
                return cls(base)
            except OSError:
                continue
        return None

    def create(self, key: str, max_pids: int | None) -> Path:
        path = self.base / key
        path.mkdir(exist_ok=True)
        (path / "pids.max").write_text("max" if max_pids is None else str(max_pids))
        return path

    def add(self, key: str, pid: int) -> None:
        (self.base / key / "cgroup.procs").write_text(str(pid))

    def kill(self, key: str) -> None:
        """SIGKILL every process in the cgroup (forks are frozen out first) and remove it."""
        path = self.base / key
        if not path.exists():
            return
        try:
            (path / "pids.max").write_text("0")
        except OSError:
            pass
        kill_file = path / "cgroup.kill"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if kill_file.exists():
                kill_file.write_text("1")
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.002)
        try:
            path.rmdir()
        except OSError:
            pass

    def close(self) -> None:
        if not self.base.exists():
            return
        for child in self.base.iterdir():
            if child.is_dir():
                self.kill(child.name)
        try:
            self.base.rmdir()
        except OSError:
            pass
