"""A ``worldrt host serve`` process started with the arguments a test needs, and what tests ask of it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from worldrt.host.runtime import build_component
from worldrt.providers import ClientTls, open_channel
from worldrt.providers.testing import wait_serving
from worldrt.v1 import host_pb, host_rpc, pb
from worldrt.wit import WIT_DIR

from .conftest import CACHE, alive, host_channel, processes_under

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "components"


def fixture_component(name: str) -> Path:
    """A test component from tests/fixtures/components, built once per change of its sources or the WIT."""
    digest = hashlib.sha256(importlib.metadata.version("componentize-py").encode())
    for path in sorted((FIXTURES / name).glob("*.py")) + sorted(WIT_DIR.glob("*.wit")):
        digest.update(path.name.encode() + path.read_bytes())
    out = CACHE / "fixtures" / digest.hexdigest()[:16] / f"{name}.wasm"
    if not out.exists():
        build_component(FIXTURES / name, out)
    return out


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll ``condition`` until it returns something true, for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s} s")
        time.sleep(0.05)


class HostProcess:
    """``worldrt host serve ARGS`` with state in ``home`` (made by the host when missing), run from ``cwd``."""

    def __init__(self, home: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                 tls_ca: Path | None = None) -> None:
        self.home = home
        self.cwd = cwd or home
        self.address = args[args.index("--listen") + 1] if "--listen" in args else f"unix:{home / 'host.sock'}"
        self.tls = ClientTls(ca=tls_ca) if tls_ca else None
        self.env = {**os.environ, "WORLDRT_STATE_DIR": str(home), **(env or {})}
        self.env.pop("WORLDRT_DB", None)
        if not env or "WORLDRT_TOKEN" not in env:
            self.env.pop("WORLDRT_TOKEN", None)
        self.log_path = self.cwd / f"host-{time.monotonic_ns()}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "host", "serve", *args],
                                         cwd=self.cwd, env=self.env, stdout=log, stderr=log)
        try:
            wait_serving(self.address, proc=self.proc, tls=self.tls)
        except BaseException:
            self.kill()
            raise
        self.token = self.env.get("WORLDRT_TOKEN") or (home / "host.token").read_text().strip()
        self.channel = host_channel(self.address, self.token, self.tls)
        self.stub = host_rpc.HostStub(self.channel)

    def health(self) -> int:
        """The host's gRPC health status (health_pb2.HealthCheckResponse.SERVING, NOT_SERVING, ...)."""
        with open_channel(self.address, tls=self.tls) as channel:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status

    def load(self, wasm: Path, source: str, provider: str = "modal") -> str:
        """Link ``source``'s generator to ``provider`` and load the component; its id."""
        self.stub.PutLink(pb.LinkConfig(source_component=source, interfaces=["generator"], target_provider=provider))
        return self.stub.LoadComponent(host_pb.LoadComponentRequest(path=str(wasm))).component_id

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, wait, and wait for every process it started to be gone."""
        tree = processes_under(str(self.home))
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        wait_gone(tree)
        return code

    def kill(self) -> None:
        """SIGKILL and wait for the host and the providers it started (they follow by parent-death signal)."""
        tree = processes_under(str(self.home))
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        wait_gone(tree)


def wait_gone(pids: set[int], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = alive(pids)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes still running: {left}"
