"""What tests see from outside a daemon's sandboxes: its live sandboxes and their members' processes."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _argv0(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        return ""


def live_sandboxes(state_dir: Path) -> int:
    """How many bubblewrap sandboxes of the daemon whose state is under ``state_dir`` are running (bwrap
    runs as two processes, the outer one counts)."""
    marker = f"bwrap[worldrt {state_dir}"
    ours = {p for p in os.listdir("/proc") if p.isdigit() and _argv0(p).startswith(marker)}
    return sum(1 for p in ours if _ppid(p) not in ours)


def member_pids(daemon_pid: int, member_id: str) -> set[int]:
    """Pids in the cgroup of one member (an instance or a branch) of the daemon with ``daemon_pid``."""
    found: set[int] = set()
    for root in Path("/sys/fs/cgroup").glob("*"):
        for base in (root, root / "unified"):
            for owner in base.glob(f"worldrt-*{daemon_pid}*"):
                procs = owner / member_id / "cgroup.procs"
                try:
                    found.update(int(p) for p in procs.read_text().split())
                except OSError:
                    continue
    return found


def settle_sandboxes(state_dir: Path, expected: int, timeout_s: float = 10.0) -> int:
    """Wait (bounded) until ``expected`` sandboxes of ``state_dir`` are left (a killed one's processes
    take a moment to go); how many there are then."""
    deadline = time.monotonic() + timeout_s
    count = live_sandboxes(state_dir)
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = live_sandboxes(state_dir)
    return count
