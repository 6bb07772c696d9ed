"""Ending a child process: SIGTERM, its exit seen the moment it happens, SIGKILL after a bound; and ending
this one without the interpreter's tear-down (``exit_now``).

``Popen.wait(timeout)`` looks for the exit in sleeps that double up to 50 ms, so it sees an exit up to
50 ms late (a daemon that took 120 ms to stop was seen at 164 ms). ``wait_exit`` waits on the process's
pidfd instead, which the kernel makes readable when the process exits; on a kernel without pidfds
(before 5.3) it falls back to ``Popen.wait``.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import subprocess
import sys
import threading
from typing import Any, NoReturn


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


def exit_now(code: int) -> NoReturn:
    """End a process whose work is done (a daemon's provider closed and its server stopped; a command's
    answer given and its host closed) without the interpreter's tear-down: its threads are joined and its
    exit handlers run (logs and telemetry flushed) as at any exit, and then its objects are not freed one by
    one. That took about 80 of a daemon's 115 ms between SIGTERM and exit (a command's five daemons stop
    together on two cores at its end), and about 80 ms of each command. Under a profiler or a tracer (which
    may write what it gathered only once the interpreter unwinds) it exits as any program does."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
