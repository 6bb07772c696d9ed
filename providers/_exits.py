"""Ending a child process: SIGTERM, its exit seen the moment it happens, SIGKILL after a bound.

``Popen.wait(timeout)`` looks for the exit in sleeps that double up to 50 ms, so it sees an exit up to
50 ms late (a daemon that took 120 ms to stop was seen at 164 ms). ``wait_exit`` waits on the process's
pidfd instead, which the kernel makes readable when the process exits; on a kernel without pidfds
(before 5.3) it falls back to ``Popen.wait``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
from typing import Any


def wait_exit(proc: subprocess.Popen[Any], timeout_s: float) -> int | None:
    """``proc``'s exit status once it has exited (and is reaped), or None while it still runs after ``timeout_s``."""
    code = proc.poll()
    if code is not None:
        return code
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
    try:
        # Reaped by another thread between the poll and pidfd_open: the pid may name another process now.
        if proc.returncode is None:
            waiter = select.poll()
            waiter.register(fd, select.POLLIN)
            waiter.poll(max(0, int(timeout_s * 1000)))
    finally:
        os.close(fd)
    return proc.poll()


def terminate(proc: subprocess.Popen[Any], timeout_s: float) -> int:
    """SIGTERM ``proc`` if it runs, wait up to ``timeout_s`` for its exit, SIGKILL it then; its exit status."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    code = wait_exit(proc, timeout_s)
    if code is None:
        proc.kill()
        code = proc.wait()
    return code
