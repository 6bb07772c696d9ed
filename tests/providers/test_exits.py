"""Ending child processes: ``wait_exit`` and ``terminate`` on real processes, with and without pidfds."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from worldrt.providers import terminate, wait_exit

pytestmark = pytest.mark.daemons  # real child processes
SLEEPER = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]
# Ignores SIGTERM once it has said "ready": only SIGKILL ends it.
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                  "print('ready', flush=True); time.sleep(60)"]


def started(argv: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    made: list[subprocess.Popen[bytes]] = []
    yield made
    for proc in made:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(params=["pidfd", "no pidfd"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "no pidfd":
        def unsupported(_pid: int, _flags: int = 0) -> int:
            raise OSError(errno.ENOSYS, "pidfd_open is not implemented")
        monkeypatch.setattr(os, "pidfd_open", unsupported)
    return str(request.param)


def test_an_exit_is_seen_with_its_status(kernel: str, procs: list[subprocess.Popen[bytes]]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(0.2); sys.exit(3)"])
    procs.append(proc)
    assert wait_exit(proc, 30) == 3
    assert proc.returncode == 3, "the process is reaped"
    assert wait_exit(proc, 30) == 3, "an exit already seen is given again"


def test_a_process_still_running_after_the_bound_gives_none(kernel: str,
                                                            procs: list[subprocess.Popen[bytes]]) -> None:
    proc = started(SLEEPER)
    procs.append(proc)
    assert wait_exit(proc, 0.2) is None
    assert proc.poll() is None, "waiting does not end the process"


def test_terminate_ends_a_process_with_sigterm(kernel: str, procs: list[subprocess.Popen[bytes]]) -> None:
    proc = started(SLEEPER)
    procs.append(proc)
    assert terminate(proc, 30) == -signal.SIGTERM
    assert terminate(proc, 30) == -signal.SIGTERM, "a process that ended is left as it is"


def test_terminate_kills_a_process_that_ignores_sigterm(kernel: str, procs: list[subprocess.Popen[bytes]]) -> None:
    proc = started(STUBBORN)
    procs.append(proc)
    assert terminate(proc, 0.3) == -signal.SIGKILL
