"""The processes a test started, seen from /proc, and waiting on conditions with a bound."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from worldrt.providers.testing import ProviderDaemon


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, *, interval_s: float = 0.05) -> Any:
    """Poll ``condition`` every ``interval_s`` until it returns something true (and return that), for at
    most ``timeout_s``; AssertionError naming ``what`` did not happen otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s} s")
        time.sleep(interval_s)


def processes_under(marker: str) -> set[int]:
    """Pids of every process whose command line mentions ``marker``, and all their descendants."""
    parents: dict[int, int] = {}
    roots: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                parents[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    roots.add(pid)
        except (OSError, IndexError, ValueError):
            continue
    found = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def cmdlines(pids: set[int]) -> dict[int, bytes]:
    """The command lines of those of ``pids`` still running."""
    out = {}
    for pid in pids:
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            pass
    return out


def environ_token(pid: int) -> str | None:
    """The WORLDRT_TOKEN a process was started with, if any."""
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"WORLDRT_TOKEN="):
            return item.split(b"=", 1)[1].decode()
    return None


def open_fds(pid: int) -> int:
    """How many descriptors ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def open_pipes(pid: int) -> int:
    """How many of ``pid``'s descriptors are pipe ends."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
        except OSError:
            pass
    return count


def rss_mib(pid: int) -> float:
    """The resident memory of ``pid``, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def settle(measure: Callable[[], float], limit: float, timeout_s: float = 10.0) -> float:
    """Wait (bounded) until ``measure()`` is at most ``limit``; its last value."""
    deadline = time.monotonic() + timeout_s
    value = measure()
    while value > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        value = measure()
    return value


def steady(measure: Callable[[], float], for_s: float = 0.3, timeout_s: float = 10.0) -> float:
    """``measure()`` once it has kept one value for ``for_s`` (bounded by ``timeout_s``: then its last value):
    a baseline not caught in the middle of the daemon's background work (a warm pool refilling)."""
    deadline = time.monotonic() + timeout_s
    value, since = measure(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = measure()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= for_s:
            break
    return value


def alive(pids: set[int]) -> set[int]:
    """The ones of ``pids`` still running (zombies are not)."""
    out = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(pid)
        except OSError:
            pass
    return out


def wait_gone(pids: set[int], timeout_s: float = 30.0) -> None:
    """Wait for ``pids`` to end; SIGKILL whatever is left after ``timeout_s`` and fail."""
    try:
        wait_for(lambda: not alive(pids), timeout_s, f"processes {sorted(pids)} did not end")
    except AssertionError:
        left = alive(pids)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise


def sigterm_mid_call_leaves_nothing(daemon: ProviderDaemon, state_dir: Path, call: Callable[[], object],
                                    reply_type: type, *, busy: int = 4) -> None:
    """SIGTERM the daemon while ``call`` runs in it (once ``busy`` processes run under ``state_dir``): the
    call fails, the daemon exits 0, nothing is left."""
    outcome: list[object] = []

    def caller() -> None:
        try:
            outcome.append(call())
        except grpc.RpcError as exc:
            outcome.append(exc.code())

    thread = threading.Thread(target=caller)
    thread.start()

    def busy_tree() -> set[int] | None:
        tree = processes_under(str(state_dir))
        return tree if len(tree) >= busy else None

    tree = wait_for(busy_tree, 30, f"{busy} processes of the call did not start")
    assert not outcome, f"the call ended before it could be interrupted: {outcome}"
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(15) == 0
    thread.join(10)
    daemon.stop()
    assert outcome and not isinstance(outcome[0], reply_type)
    wait_gone(tree, 10)
    assert not alive(processes_under(str(state_dir)))
