"""Per-member cgroups: an exact bound on processes and memory, a fair share of cpu, and a kill that
reaches every descendant.

Uses the cgroup v2 controllers where they are enabled, else the v1 ``pids``, ``memory`` and ``cpu``
hierarchies, each where it is writable. Every daemon owns one directory per hierarchy, named for its
pid; directories of daemons that died without cleaning up (SIGKILL) are removed when the next opens.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_OWNER = re.compile(r"^worldrt-(?:[a-z]+-)?(\d+)(?:-[a-z0-9]+)?$")
CONTROLLERS = ("pids", "memory", "cpu")


@dataclass(frozen=True)
class _Hierarchy:
    root: Path
    controllers: tuple[str, ...]
    unified: bool


def _mounts() -> list[tuple[Path, str, set[str]]]:
    """(mount point, fs type, options) of every cgroup file system mounted here."""
    found = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 3 and parts[2] in ("cgroup", "cgroup2"):
                    found.append((Path(parts[1]), parts[2], set(parts[3].split(","))))
    except OSError:
        pass
    return found


def _find() -> list[_Hierarchy]:
    """Where each controller can be used: a unified (v2) hierarchy that has it, else its v1 hierarchy."""
    found: list[_Hierarchy] = []
    missing = set(CONTROLLERS)
    mounts = _mounts()
    for root, fstype, _options in mounts:
        if fstype != "cgroup2" or not os.access(root, os.W_OK):
            continue
        try:
            enabled = set((root / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        have = tuple(c for c in CONTROLLERS if c in enabled and c in missing)
        if have:
            found.append(_Hierarchy(root, have, True))
            missing -= set(have)
    for root, fstype, options in mounts:
        have = tuple(c for c in CONTROLLERS if c in options and c in missing)
        if fstype == "cgroup" and have and os.access(root, os.W_OK):
            found.append(_Hierarchy(root, have, False))
            missing -= set(have)
    return found


def _remove_orphans(root: Path) -> None:
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _OWNER.match(entry.name)
        if match is None or not entry.is_dir():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its daemon is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        _remove_tree(entry)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _pids(path: str) -> list[int]:
    try:
        fd = os.open(f"{path}/cgroup.procs", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except OSError:
        return []
    finally:
        os.close(fd)
    return [int(p) for p in b"".join(chunks).split()]


def _kill_and_remove(path: str, unified: bool) -> None:
    deadline = time.monotonic() + 5
    pause = 0.001
    while time.monotonic() < deadline:
        try:
            os.rmdir(path)  # succeeds as soon as the cgroup is empty
            return
        except FileNotFoundError:
            return
        except OSError:
            pass
        if unified:
            try:
                _write(f"{path}/cgroup.kill", "1")
            except OSError:
                pass
        for pid in _pids(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _remove_tree(base: Path) -> None:
    for child in base.iterdir() if base.is_dir() else ():
        if child.is_dir():
            _kill_and_remove(str(child), True)
    try:
        base.rmdir()
    except OSError:
        pass


class Cgroups:
    """The cgroup directories of one daemon: one child cgroup per sandboxed member in each hierarchy."""

    def __init__(self, name: str, hierarchies: list[_Hierarchy]) -> None:
        self.name = name
        self._hierarchies = hierarchies
        # Each hierarchy's folder of this daemon, and whether it limits swap (a kernel setting, asked once).
        self._bases = [(f"{h.root}/{name}", h) for h in hierarchies]
        self._swap: dict[str, bool] = {}

    @classmethod
    def open(cls, name: str) -> Cgroups:
        """This daemon's cgroups (``name`` names its pid); an object with no hierarchy where none is writable."""
        usable = []
        for hierarchy in _find():
            try:
                _remove_orphans(hierarchy.root)
                base = hierarchy.root / name
                base.mkdir(exist_ok=True)
                if hierarchy.unified:
                    (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in hierarchy.controllers))
                usable.append(hierarchy)
            except OSError:
                continue
        return cls(name, usable)

    @property
    def hierarchies(self) -> list[tuple[Path, tuple[str, ...], bool]]:
        """(mount point, controllers used there, whether it is v2) of each hierarchy a member joins."""
        return [(h.root, h.controllers, h.unified) for h in self._hierarchies]

    @property
    def controllers(self) -> list[str]:
        return sorted(c for h in self._hierarchies for c in h.controllers)

    def create(self, key: str, max_pids: int | None, memory_bytes: int | None) -> None:
        """A cgroup for ``key`` with its limits, in every hierarchy (before any process joins it)."""
        for base, h in self._bases:
            path = f"{base}/{key}"
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            if "pids" in h.controllers:
                _write(f"{path}/pids.max", "max" if max_pids is None else str(max_pids))
            if "memory" in h.controllers and memory_bytes is not None:
                limit, swap = ("memory.max", "memory.swap.max") if h.unified else (
                    "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
                _write(f"{path}/{limit}", str(memory_bytes))
                if self._has_swap_limit(path, swap):
                    _write(f"{path}/{swap}", "0" if h.unified else str(memory_bytes))

    def _has_swap_limit(self, path: str, swap: str) -> bool:
        if swap not in self._swap:
            self._swap[swap] = os.path.exists(f"{path}/{swap}")
        return self._swap[swap]

    def add(self, key: str, pid: int) -> None:
        for base, _h in self._bases:
            _write(f"{base}/{key}/cgroup.procs", str(pid))

    def warm(self) -> None:
        """Move this process into the cgroup it is already in. The first move after a pause waits out an
        RCU grace period (the kernel's cgroup write lock); doing it while children are still forking
        means their own moves, right after, do not wait."""
        for h in self._hierarchies[:1]:
            with open("/proc/self/cgroup") as f:
                for line in f:
                    _id, names, path = line.rstrip("\n").split(":", 2)
                    if (h.unified and names == "") or (not h.unified and set(h.controllers) <= set(names.split(","))):
                        (h.root / path.lstrip("/") / "cgroup.procs").write_text(str(os.getpid()))
                        return

    def memory_peak(self, key: str) -> int | None:
        """Most memory the member's processes used at once (bytes), where the kernel reports it."""
        for h in self._hierarchies:
            if "memory" in h.controllers:
                name = "memory.peak" if h.unified else "memory.max_usage_in_bytes"
                try:
                    return int((h.root / self.name / key / name).read_text())
                except (OSError, ValueError):
                    return None
        return None

    def stop(self, key: str) -> None:
        """SIGKILL every process of ``key`` now; no new one can be forked where pids allows."""
        pids: set[int] = set()
        for base, h in self._bases:
            path = f"{base}/{key}"
            if "pids" in h.controllers:
                try:
                    _write(f"{path}/pids.max", "0")
                except OSError:
                    pass
            if h.unified:
                try:
                    _write(f"{path}/cgroup.kill", "1")
                except OSError:
                    pass
            pids.update(_pids(path))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, key: str) -> None:
        """Wait (bounded) until the processes of ``key`` are gone, then remove its cgroups."""
        for base, h in self._bases:
            _kill_and_remove(f"{base}/{key}", h.unified)

    def kill(self, key: str) -> None:
        self.stop(key)
        self.remove(key)

    def close(self) -> None:
        for h in self._hierarchies:
            base = h.root / self.name
            if base.exists():
                _remove_tree(base)
