"""A lattice on loopback for tests that need no second machine: ``worldrt lattice serve`` on a free port of
127.0.0.1, ``worldrt registry serve`` and ``worldrt host serve --lattice`` as real processes, and a bare
nats-py client (``Lattice``) that does what an attacker with the lattice's credentials can do.

Every process started here is stopped by ``close`` (and its children: providers follow their host).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import free_port, host_channel, processes_under, wait_for, wait_gone
from worldrt.host.lattice import Lattice, LatticeOptions
from worldrt.providers.testing import wait_serving
from worldrt.v1 import host_pb, host_rpc

TOKEN = "loopback-lattice-token"


def _env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WORLDRT_LATTICE", "WORLDRT_SECRETS")) and k not in ("WORLDRT_TOKEN", "WORLDRT_DB")}
    env["WORLDRT_LATTICE_TOKEN"] = TOKEN
    if home is not None:
        env["WORLDRT_STATE_DIR"] = str(home)
    return env


def _limited(argv: list[str], limit: int | None) -> list[str]:
    """``argv`` run with at most ``limit`` bytes of data (heap and private writable mappings): a safety net that
    makes a host reading an endless file fail alone instead of taking the machine's memory."""
    return argv if limit is None else ["prlimit", f"--data={limit}:{limit}", "--", *argv]


class Served:
    """A ``worldrt ... serve`` answering worldrt.v1.Host at ``unix:HOME/host.sock`` (a host or the registry)."""

    def __init__(self, home: Path, args: list[str], *, data_limit: int | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home, self.args, self.data_limit = home, args, data_limit
        self.address = f"unix:{home / 'host.sock'}"
        self.log_path = home / "serve.log"
        self.start()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(_limited([sys.executable, "-m", "worldrt.host.cli", *self.args],
                                                  self.data_limit), cwd=self.home, env=_env(self.home), stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL)
        try:
            wait_serving(self.address, timeout_s=120, proc=self.proc, log_path=self.log_path)
        except BaseException:
            self.kill()
            raise
        self.token = (self.home / "host.token").read_text().strip()
        self.channel = host_channel(self.address, self.token)
        self.stub = host_rpc.HostStub(self.channel)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL; its providers follow it by their parent-death signal."""
        tree = processes_under(str(self.home))
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        wait_gone(tree)

    def stop(self) -> int | None:
        tree = processes_under(str(self.home))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        wait_gone(tree)
        return self.proc.returncode

    def links(self) -> dict[str, dict[str, str]]:
        """The host's links as it lists them: link id → its secrets (names, values redacted)."""
        reply = self.stub.ListLinks(host_pb.ListLinksRequest(), timeout=30)
        return {link.link_id: dict(link.secrets) for link in reply.links}


class LoopbackLattice:
    """``lattice serve`` on 127.0.0.1 (token auth), and the registry and hosts a test starts on it."""

    def __init__(self, root: Path, name: str = "default") -> None:
        self.root, self.name = root, name
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.served: list[Served] = []
        self.clients: list[Lattice] = []
        self.log_path = root / "lattice.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "lattice", "serve", "--listen",
                                          f"127.0.0.1:{self.port}", "--store", str(root / "store")], cwd=root,
                                         env=_env(root), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for(lambda: "lattice serving" in self.log_path.read_text() or self.proc.poll() is not None, 60,
                 "the lattice serving")
        assert self.proc.poll() is None, self.log_path.read_text()

    def flags(self) -> list[str]:
        return ["--lattice", self.url, "--lattice-name", self.name]

    def client(self) -> Lattice:
        """A bare nats-py client with the lattice's credentials (what an attacker holding them has)."""
        lattice = Lattice(LatticeOptions(self.url, name=self.name, token=TOKEN), client_name="test-attacker")
        self.clients.append(lattice)
        return lattice

    def registry(self, home: Path, *extra: str) -> Served:
        served = Served(home, ["registry", "serve", *self.flags(), "--db", str(home / "world.duckdb"), *extra])
        self.served.append(served)
        return served

    def host(self, home: Path, host_id: str, providers: str = "", *, data_limit: int | None = None) -> Served:
        args = ["host", "serve", *self.flags(), "--host-id", host_id] + (["--providers", providers] if providers else [])
        served = Served(home, args, data_limit=data_limit)
        self.served.append(served)
        return served

    def cli(self, home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], cwd=home, env=_env(home), text=True,
                              capture_output=True, timeout=timeout)

    def close(self) -> None:
        for client in self.clients:
            try:
                client.close(drain=False)
            except Exception:  # noqa: BLE001 - the server goes next regardless
                pass
        for served in reversed(self.served):
            try:
                served.stop()
            except Exception:  # noqa: BLE001 - the others are stopped regardless
                served.kill()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        wait_gone(processes_under(str(self.root / "store")))

