"""Bare forks for bench/branching.py, from a lean process (no gRPC, so no thread: a process with threads
cannot enter a new user namespace) grown to the resident memory asked for. Reads one JSON request a line on
stdin and answers a line:

    {"reps": 50, "rss_mb": 12, "children": 3, "double": false, "isolate": true, "cgroups": true}
    -> {"samples": [ms, ...]}

Its one argument is JSON: [[cgroup directory, [controllers], v2?], ...], where each child's cgroups go.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time

# A branch's own namespaces (sched.h): user, network, IPC, UTS.
_NEW_NAMESPACES = 0x10000000 | 0x40000000 | 0x08000000 | 0x04000000


def _unshare(flags: int) -> None:
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(flags)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class BareCgroups:
    """One cgroup a child in each directory given, with a member's limits, made and removed with bare
    system calls. This process lives in the first directory itself, so it can warm the kernel's cgroup
    write lock as the daemon does before a batch (``Cgroups.warm``)."""

    def __init__(self, dirs: list[tuple[str, list[str], bool]]) -> None:
        self._dirs = dirs
        for base, _controllers, _unified in dirs:
            _write(f"{base}/cgroup.procs", str(os.getpid()))

    def warm(self) -> None:
        for base, _controllers, _unified in self._dirs[:1]:
            _write(f"{base}/cgroup.procs", str(os.getpid()))

    def place(self, pid: int) -> None:
        for base, controllers, unified in self._dirs:
            path = f"{base}/{pid}"
            os.mkdir(path)
            if "pids" in controllers:
                _write(f"{path}/pids.max", "1024")
            if "memory" in controllers:
                _write(f"{path}/{'memory.max' if unified else 'memory.limit_in_bytes'}", str(1 << 30))
            _write(f"{path}/cgroup.procs", str(pid))

    def remove(self, pid: int) -> None:
        for base, _controllers, _unified in self._dirs:
            os.rmdir(f"{base}/{pid}")


def bare_fork(reps: int, rss_mb: int, children: int, *, double: bool = False, isolate: bool = False,
              cgroups: BareCgroups | None = None) -> list[float]:
    """Fork ``children`` ready-signalling copies of this process, grown to ``rss_mb`` resident memory;
    ``double``: each forks once more and its first process exits (the copy is not this process's child);
    ``isolate``: each enters new user, network, IPC and UTS namespaces before it says it is ready;
    ``cgroups``: each is put in its own cgroups with limits while it does, removed after its kill."""
    ballast = bytearray(max(0, rss_mb * 1024 - _rss_kib()) * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    samples = []
    for _ in range(reps):
        pids: list[int] = []
        t0 = time.perf_counter()
        if cgroups is not None:
            cgroups.warm()
        for _ in range(children):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(r)
                    if isolate:
                        _unshare(_NEW_NAMESPACES)
                    if double and os.fork() != 0:
                        os._exit(0)
                    os.write(w, str(os.getpid()).encode().ljust(16))
                    signal.pause()
                finally:
                    os._exit(0)
            os.close(w)
            if double:
                os.waitpid(pid, 0)
            if cgroups is not None:
                cgroups.place(pid)
            said = os.read(r, 16)
            os.close(r)
            if not said:
                raise RuntimeError("a bare fork did not come up (namespaces refused?)")
            pids.append(int(said))
        samples.append((time.perf_counter() - t0) * 1000)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            if not double:
                os.waitpid(pid, 0)
            if cgroups is not None:
                cgroups.remove(pid)
    del ballast
    return samples


def main() -> None:
    cgroups = BareCgroups(json.loads(sys.argv[1]))
    for line in sys.stdin:
        request = json.loads(line)
        try:
            samples = bare_fork(request["reps"], request["rss_mb"], request["children"], double=request["double"],
                                isolate=request["isolate"], cgroups=cgroups if request["cgroups"] else None)
            answer: dict[str, object] = {"samples": samples}
        except (OSError, RuntimeError) as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
