"""Real hosts for tests: ``worldrt host serve`` processes, channels that carry their token, and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.processes import processes_under, wait_gone
from worldrt.providers import ClientTls, open_channel
from worldrt.providers.testing import ProviderDaemon, wait_serving
from worldrt.v1 import host_pb, host_rpc, pb


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``worldrt ARGS`` run in ``home`` with its state there."""
    env = {**os.environ, "WORLDRT_STATE_DIR": str(home)}
    env.pop("WORLDRT_TOKEN", None)
    env.pop("WORLDRT_DB", None)
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], cwd=home, env=env, text=True,
                          capture_output=True, timeout=timeout)


class _WithToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds ``authorization: Bearer TOKEN`` to every call on a channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def host_channel(address: str, token: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A channel to a running host that sends its bearer token on every call."""
    return grpc.intercept_channel(open_channel(address, tls=tls, token=token), _WithToken(token))


class HostProcess:
    """``worldrt host serve ARGS`` with state in ``home`` (made by the host when missing), run from ``cwd``;
    ``stub`` sends its token (the one in ``env``, else the one the host made in ``home/host.token``)."""

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
                                         cwd=self.cwd, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            wait_serving(self.address, proc=self.proc, tls=self.tls, log_path=self.log_path)
        except BaseException:
            self.kill()
            raise
        self.token = self.env.get("WORLDRT_TOKEN") or (home / "host.token").read_text().strip()
        self.channel = host_channel(self.address, self.token, self.tls)
        self.stub = host_rpc.HostStub(self.channel)

    def health(self) -> int:
        """The host's gRPC health status (health_pb2.HealthCheckResponse.SERVING, NOT_SERVING, ...)."""
        with open_channel(self.address, tls=self.tls) as channel:
            status: int = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            return status

    def load(self, wasm: Path, source: str, provider: str = "modal") -> str:
        """Link ``source``'s generator to ``provider`` and load the component; its id."""
        self.stub.PutLink(pb.LinkConfig(source_component=source, interfaces=["generator"], target_provider=provider))
        component_id: str = self.stub.LoadComponent(host_pb.LoadComponentRequest(path=str(wasm))).component_id
        return component_id

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


def module_daemon(factory: pytest.TempPathFactory, name: str, **options: str) -> Iterator[ProviderDaemon]:
    """A provider daemon for a module's tests (a fixture's body): state in a fresh folder, and after the
    last test its log must hold no traceback."""
    with ProviderDaemon(name, state_dir=factory.mktemp(name), options=options) as daemon:
        yield daemon
        log = Path(daemon.log_path).read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
