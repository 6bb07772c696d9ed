"""Shared fixtures: real provider daemons started as processes on unix sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from worldrt.providers import ClientTls, open_channel
from worldrt.providers.testing import ProviderDaemon, wait_serving
from worldrt.v1 import host_rpc, pb

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "components" / "examples"
# One cache of built and compiled components for the whole test run (hosts in tests share it).
CACHE = ROOT / ".worldrt" / "cache"
os.environ.setdefault("WORLDRT_CACHE", str(CACHE))


def built_example(name: str) -> Path:
    """An example component, built once per change of its sources, the WIT or componentize-py (~10 s a build)."""
    from worldrt.host.verse import example_component

    return example_component(name, CACHE / "examples")


def processes_under(marker: str) -> set[int]:
    """Pids of every process whose command line mentions ``marker``, and all their descendants."""
    parents: dict[int, int] = {}
    roots: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                parents[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    roots.add(pid)
        except (OSError, IndexError, ValueError):
            continue
    found = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(pid)
        except OSError:
            pass
    return out


@pytest.fixture(scope="module")
def morph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    state = tmp_path_factory.mktemp("morph")
    with ProviderDaemon("morph", state_dir=state, options={"pool_size": "2"}) as daemon:
        yield daemon
        log = Path(daemon.log_path)
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


@pytest.fixture()
def stub(morph: ProviderDaemon):
    return morph.stub


@pytest.fixture()
def instance(stub) -> Iterator[str]:
    inst = stub.Start(pb.StartRequest())
    yield inst.instance_id
    try:
        stub.Stop(pb.InstanceRef(instance_id=inst.instance_id))
    except grpc.RpcError:
        pass


def run(stub, instance_id: str, code: str, **kw) -> pb.ExecutionResult:
    return stub.Execute(pb.ExecuteRequest(instance_id=instance_id, code=code, **kw))


def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORLDRT_STATE_DIR": str(home)}
    env.pop("WORLDRT_TOKEN", None)
    env.pop("WORLDRT_DB", None)
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], cwd=home, env=env, text=True,
                          capture_output=True, timeout=timeout)


class _WithToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer TOKEN`` to every call on a channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return details._replace(metadata=[*(details.metadata or ()), self._header])  # type: ignore[attr-defined]

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


def host_channel(address: str, token: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A channel to a running host that sends its bearer token on every call."""
    return grpc.intercept_channel(open_channel(address, tls=tls, token=token), _WithToken(token))


class RunningHost:
    """``worldrt host serve`` in ``home``; ``stub`` sends the token the host made (``home/host.token``)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.address = f"unix:{home / 'host.sock'}"
        env = {**os.environ, "WORLDRT_STATE_DIR": str(home)}
        env.pop("WORLDRT_TOKEN", None)
        self.log = open(home / "host.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "host", "serve"], cwd=home, env=env,
                                     stdout=self.log, stderr=self.log)
        try:
            wait_serving(self.address, proc=self.proc)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            raise
        self.token = (home / "host.token").read_text().strip()
        self.channel = host_channel(self.address, self.token)
        self.stub = host_rpc.HostStub(self.channel)

    def stop(self) -> int:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.log.close()
        return code


def sigterm_mid_call_leaves_nothing(daemon: ProviderDaemon, state_dir: Path, call: Callable[[], object],
                                    reply_type: type) -> None:
    """SIGTERM the daemon while ``call`` runs in it: the call fails, the daemon exits 0, nothing is left."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except grpc.RpcError as exc:
            outcome.append(exc.code())

    caller = threading.Thread(target=run)
    caller.start()
    time.sleep(1.0)
    tree = processes_under(str(state_dir))
    assert len(tree) >= 4, tree
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(15) == 0
    caller.join(10)
    daemon.stop()
    assert outcome and not isinstance(outcome[0], reply_type)
    deadline = time.monotonic() + 10
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(processes_under(str(state_dir)))
