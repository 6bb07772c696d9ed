"""Many machines on one: network namespaces a test makes for a lattice, and the processes it runs in them.

A hub namespace holds a bridge (and the lattice's nats-server and registry); each machine is a namespace
with one veth into the hub's bridge; the test process itself gets a veth too, so it can call the lattice
as one more machine. Addresses come from 198.18.0.0/15 only (reserved for benchmarks, never routed): one
/24 per test process. Names start with ``wrt10`` and the process id. ``close`` kills every process
started here and removes every namespace and veth. Root only: ``skip_unless_root`` says so otherwise.

The lattice is set up as it must be off loopback (tests/host/lattice/secure.py): ``lattice serve`` with
the identities of ``lattice creds init`` and TLS, each machine joining with its own credential (the test
process with ``t``'s, a caller), links put with admin's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.host.lattice.secure import Identities, make_identities
from tests.support import host_channel, processes_under, wait_for, wait_gone
from worldrt.host.lattice import Lattice
from worldrt.providers import CATALOG
from worldrt.providers.testing import wait_serving
from worldrt.v1 import host_rpc

PORT = 4222
# The test process's own identity: a caller.
TESTER = "t"


def skip_unless_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("multi-host lattice tests make network namespaces and veth pairs, which needs root")


def make_topology(root: Path, machines: list[str], serves: dict[str, str] | None = None) -> Topology:
    """The topology, or a skip saying why when this root may not make network namespaces (a container)."""
    skip_unless_root()
    try:
        return Topology(root, machines, serves)
    except subprocess.CalledProcessError as exc:
        if "permitted" in (exc.stderr or "") or "denied" in (exc.stderr or ""):
            pytest.skip(f"multi-host lattice tests need network namespaces, which this machine refuses: {exc.stderr}")
        raise


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _free_octet() -> int:
    """A third octet for 198.18.X.0/24 no route of this machine uses yet (parallel workers differ)."""
    start = 10 + os.getpid() % 200
    for step in range(240):
        octet = 10 + (start - 10 + step) % 240
        if not _ip("route", "show", f"198.18.{octet}.0/24").stdout.strip():
            return octet
    raise RuntimeError("no free 198.18.X.0/24 for a test lattice")


class Proc:
    """A process run in a namespace (``ip netns exec`` execs it: the pid is the program's)."""

    def __init__(self, ns: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path) -> None:
        self.ns, self.argv, self.log_path, self.env, self.cwd = ns, argv, log, env, cwd
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(["ip", "netns", "exec", self.ns, *self.argv], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd)

    def restart(self) -> None:
        assert self.proc.poll() is not None
        self.proc = self._start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, timeout_s: float = 60) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Served(Proc):
    """A ``worldrt ... serve`` that answers worldrt.v1.Host at ``unix:HOME/host.sock`` (its state in ``home``):
    a lattice host, or the registry."""

    def __init__(self, ns: str, home: Path, args: list[str], env: dict[str, str]) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home, self.address = home, f"unix:{home / 'host.sock'}"
        super().__init__(ns, [sys.executable, "-m", "worldrt.host.cli", *args], home / "serve.log",
                         {**env, "WORLDRT_STATE_DIR": str(home)}, home)
        self.ready()

    def ready(self) -> None:
        try:
            wait_serving(self.address, timeout_s=120, proc=self.proc, log_path=self.log_path)
        except BaseException:
            self.kill()
            raise
        self.token = (self.home / "host.token").read_text().strip()
        self.channel = host_channel(self.address, self.token)
        self.stub = host_rpc.HostStub(self.channel)

    def kill(self) -> None:
        """SIGKILL; its providers follow it by their parent-death signal."""
        tree = processes_under(str(self.home))
        self.signal(signal.SIGKILL)
        self.proc.wait(30)
        wait_gone(tree)

    def start_again(self) -> None:
        self.restart()
        self.ready()

    def stop(self, timeout_s: float = 60) -> int | None:
        tree = processes_under(str(self.home))
        code = super().stop(timeout_s)
        wait_gone(tree)
        return code


class Topology:
    """A hub and ``machines``; ``url`` is the lattice as every namespace (and this process) reaches it.
    ``serves``: the providers each machine may serve (comma-separated; default every provider)."""

    def __init__(self, root: Path, machines: list[str], serves: dict[str, str] | None = None) -> None:
        self.root = root
        self.tag = f"wrt10{os.getpid()}"
        self.short = f"w{os.getpid() % 100000:05d}"
        self.octet = _free_octet()
        self.hub = f"{self.tag}-hub"
        self.namespaces: list[str] = []
        self.procs: list[Proc] = []
        self.hub_side: dict[str, str] = {}
        every = ",".join(CATALOG)
        wanted = {machine: (serves or {}).get(machine, every if serves is None else "") for machine in machines}
        # Not beside the machines' folders: a machine is found by its folder's path (processes_under).
        self.ids: Identities = make_identities(root / "_identities", {**wanted, TESTER: ""}, [self.address(1)])
        try:
            self._make(machines)
        except BaseException:
            self.close()
            raise

    def address(self, index: int) -> str:
        return f"198.18.{self.octet}.{index}"

    @property
    def url(self) -> str:
        return f"tls://{self.address(1)}:{PORT}"

    def env(self, identity: str) -> dict[str, str]:
        """The environment of a process that joins as ``identity`` (a machine, registry or admin)."""
        env = self.ids.env(identity, self.url)
        for key in ("WORLDRT_TOKEN", "WORLDRT_DB", "WORLDRT_STATE_DIR"):
            env.pop(key, None)
        return env

    def connect(self, identity: str = TESTER, client: str = "test-machine") -> Lattice:
        """This process on the lattice as ``identity``."""
        return self.ids.connect(identity, self.url, client)

    def ns(self, machine: str) -> str:
        return f"{self.tag}-{machine}"

    def _make(self, machines: list[str]) -> None:
        _ip("netns", "add", self.hub)
        self.namespaces.append(self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{self.address(1)}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for index, machine in enumerate(machines, start=10):
            ns = self.ns(machine)
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            self._wire(machine, ns, index)
        # This process's own machine: a veth in the root namespace.
        self.root_veth = f"{self.short}t"
        _ip("link", "add", self.root_veth, "type", "veth", "peer", "name", f"{self.short}tp")
        _ip("link", "set", f"{self.short}tp", "netns", self.hub)
        _ip("-n", self.hub, "link", "set", f"{self.short}tp", "master", "br0", "up")
        _ip("addr", "add", f"{self.address(254)}/24", "dev", self.root_veth)
        _ip("link", "set", self.root_veth, "up")

    def _wire(self, machine: str, ns: str, index: int) -> None:
        inside, outside = f"{self.short}{machine}i", f"{self.short}{machine}"
        _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        _ip("link", "set", outside, "netns", self.hub)
        _ip("-n", self.hub, "link", "set", outside, "master", "br0", "up")
        _ip("link", "set", inside, "netns", ns)
        _ip("-n", ns, "link", "set", inside, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        self.hub_side[machine] = outside

    def cut(self, machine: str, up: bool = False) -> None:
        """Take ``machine``'s link to the hub down (a partition), or up again."""
        _ip("-n", self.hub, "link", "set", self.hub_side[machine], "up" if up else "down")

    def run(self, ns: str, argv: list[str], name: str, cwd: Path | None = None, identity: str = "admin") -> Proc:
        proc = Proc(ns, argv, self.root / f"{name}.log", self.env(identity), cwd or self.root)
        self.procs.append(proc)
        return proc

    def cli(self, machine: str, *args: str, timeout: float = 60, identity: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        """``worldrt ARGS`` on ``machine``, as ``identity`` (default: the machine's own)."""
        return subprocess.run(["ip", "netns", "exec", self.ns(machine), sys.executable, "-m", "worldrt.host.cli",
                               *args], env=self.env(identity or machine), cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)

    def serve_lattice(self) -> Proc:
        proc = self.run(self.hub, [sys.executable, "-m", "worldrt.host.cli", "lattice", "serve", "--listen",
                                   f"{self.address(1)}:{PORT}", "--store", str(self.root / "hub"),
                                   *self.ids.serve_args()], "lattice")
        wait_for(lambda: "lattice serving" in proc.log() or proc.proc.poll() is not None, 30, "the lattice serving")
        assert proc.proc.poll() is None, proc.log()
        return proc

    def host(self, machine: str, providers: str = "") -> Served:
        """``worldrt host serve --lattice URL --host-id MACHINE [--providers ...]`` on ``machine``."""
        args = ["host", "serve", "--lattice", self.url, "--host-id", machine]
        host = Served(self.ns(machine), self.root / machine, args + (["--providers", providers] if providers else []),
                      self.env(machine))
        self.procs.append(host)
        return host

    def registry(self) -> Served:
        """``worldrt registry serve`` in the hub, writing ROOT/registry/world.duckdb."""
        home = self.root / "registry"
        served = Served(self.hub, home, ["registry", "serve", "--lattice", self.url, "--db",
                                         str(home / "world.duckdb")], self.env("registry"))
        self.procs.append(served)
        return served

    def close(self) -> None:
        def stop(proc: Proc) -> None:
            try:
                proc.stop()
            except Exception:  # noqa: BLE001 - the namespaces go regardless
                proc.proc.kill()

        lattice = [p for p in self.procs if "lattice" in p.argv]
        stoppers = [threading.Thread(target=stop, args=(p,)) for p in self.procs if p not in lattice]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        for proc in lattice:
            stop(proc)
        if getattr(self, "root_veth", None):
            _ip("link", "del", self.root_veth, check=False)
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)
