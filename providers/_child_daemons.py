"""Provider daemons as child processes: the one way to start one and the one health probe.

``spawn_daemon`` starts ``worldrt provider serve NAME`` with its token in the environment (never on its
command line); the host's supervisor and the test harness both use it. ``serving`` asks the standard
gRPC health service of any daemon or host; ``wait_serving`` waits for it with a bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from worldrt.errors import DeadlineExceeded, Unavailable
from worldrt.providers._auth import TOKEN_ENV
from worldrt.providers._channel import ClientTls, open_channel


def serving(address: str, timeout_s: float = 1.0, *, tls: ClientTls | None = None) -> bool | None:
    """True when the health service at ``address`` says SERVING, False when it says anything else, None
    when nothing answers."""
    if address.startswith("unix:") and not Path(address[5:]).exists():
        return None
    with open_channel(address, tls=tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return None
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_serving(address: str, timeout_s: float = 30.0, proc: subprocess.Popen[bytes] | None = None, *,
                 tls: ClientTls | None = None, log_path: Path | None = None) -> None:
    """Block until the health service at ``address`` says SERVING; Unavailable if ``proc`` exits first,
    DeadlineExceeded after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    where = f"; see {log_path}" if log_path else ""
    while True:
        if proc is not None and proc.poll() is not None:
            raise Unavailable(f"the daemon at {address} exited with {proc.returncode} before serving{where}")
        if serving(address, 1.0, tls=tls):
            return
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"no SERVING health status from {address} within {timeout_s:.0f} s{where}")
        time.sleep(0.05)


def spawn_daemon(name: str, listen: str, state_dir: Path, log_path: Path, *, token: str | None = None,
                 options: Mapping[str, str] | None = None, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, umask: int = -1,
                 pipe_stderr: bool = False) -> subprocess.Popen[bytes]:
    """Start ``worldrt provider serve NAME`` listening on ``listen``, its output appended to ``log_path``
    (as ``python -m worldrt.providers serve``: the same options, without importing the host). With
    ``pipe_stderr`` its stderr is a pipe the caller must read (its log, line by line), its stdout still the file."""
    argv = [sys.executable, "-m", "worldrt.providers", "serve", name, "--listen", listen,
            "--state-dir", str(state_dir)]
    for key, value in (options or {}).items():
        argv += ["--set", f"{key}={value}"]
    argv += list(args)
    child_env = {k: v for k, v in (env if env is not None else os.environ).items() if k != TOKEN_ENV}
    if token:
        child_env[TOKEN_ENV] = token
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.PIPE if pipe_stderr else log, env=child_env, umask=umask)
