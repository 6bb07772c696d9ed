"""The processes a runtime started, found from /proc: every process whose command line names its folder,
and all their descendants (the host, its provider daemons, their sandboxes).

Invariants: only this machine's /proc is read; a process that ends while it is read is skipped; nothing
here signals a process that is not in the set it was given.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _parents_and_marked(marker: bytes) -> tuple[dict[int, int], set[int]]:
    parents: dict[int, int] = {}
    marked: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            parents[pid] = int(fields[1])
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                marked.add(pid)
        except (OSError, IndexError, ValueError):
            continue
    return parents, marked


def processes_of(folder: Path) -> set[int]:
    """Pids of the live processes whose command line names ``folder``, and of all their descendants."""
    parents, found = _parents_and_marked(str(folder).encode())
    found.discard(os.getpid())
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found and pid != os.getpid():
                found.add(pid)
                grew = True
    return found


def end(pids: set[int], timeout_s: float) -> set[int]:
    """Wait up to ``timeout_s`` for ``pids`` to end, then SIGKILL what is left; the ones that were left."""
    deadline = time.monotonic() + timeout_s
    left = _alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _alive(left)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(pid)
        except (OSError, IndexError):
            pass
    return out
