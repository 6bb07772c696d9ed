"""Shared fixtures: real provider daemons started as processes on unix sockets."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "components" / "examples"
BUILDS = ROOT / ".worldrt" / "cache" / "test-builds"


def built_example(name: str) -> Path:
    """An example component, built once per change of its sources, the WIT or componentize-py (~10 s a build)."""
    from worldrt.host import build_component
    from worldrt.wit import WIT_DIR

    source_dir = EXAMPLES / name
    digest = hashlib.sha256(importlib.metadata.version("componentize-py").encode())
    for source in sorted(source_dir.glob("*.py")) + sorted(WIT_DIR.glob("*.wit")):
        digest.update(source.name.encode() + source.read_bytes())
    out = BUILDS / digest.hexdigest()[:16] / f"{name}.wasm"
    if not out.exists():
        result = build_component(source_dir, out)
        assert result.path == out and result.size_bytes == out.stat().st_size
    return out


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
def stub(morph: ProviderDaemon):  # noqa: ANN201 - the generated stub has no useful type
    return morph.stub


@pytest.fixture()
def instance(stub) -> Iterator[str]:  # noqa: ANN001
    inst = stub.Start(pb.StartRequest())
    yield inst.instance_id
    try:
        stub.Stop(pb.InstanceRef(instance_id=inst.instance_id))
    except grpc.RpcError:
        pass


def run(stub, instance_id: str, code: str, **kw) -> pb.ExecutionResult:  # noqa: ANN001, ANN003
    return stub.Execute(pb.ExecuteRequest(instance_id=instance_id, code=code, **kw))


def status_of(call) -> grpc.StatusCode:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()
