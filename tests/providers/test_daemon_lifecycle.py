"""The daemon as a process: auth, graceful stop with no orphans, Shutdown."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support import alive, processes_under
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


def _wait_gone(pids: set[int], timeout_s: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(pids)


def test_bearer_token_is_required_except_for_health(tmp_path: Path) -> None:
    with ProviderDaemon("morph", state_dir=tmp_path, token="s3cret") as daemon:
        stub = daemon.stub
        with pytest.raises(grpc.RpcError) as info:
            stub.Capabilities(pb.CapabilitiesRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            stub.Capabilities(pb.CapabilitiesRequest(), metadata=(("authorization", "Bearer wrong"),))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            list(stub.ExecuteStream(pb.ExecuteRequest(instance_id="x"), metadata=(("authorization", "Bearer no"),)))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.Capabilities(pb.CapabilitiesRequest(), metadata=daemon.metadata).trit == 1
        health = health_pb2_grpc.HealthStub(daemon.channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_instance_and_leaves_no_process(tmp_path: Path, signum: int) -> None:
    daemon = ProviderDaemon("morph", state_dir=tmp_path).start()
    stub = daemon.stub
    iid = stub.Start(pb.StartRequest()).instance_id
    stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import subprocess\n"
                                   "p = subprocess.Popen(['sleep', '300'])", language="python"))
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=iid))
    stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=4))
    tree = processes_under(str(tmp_path))
    assert len(tree) >= 8, tree
    assert daemon.proc is not None
    daemon.proc.send_signal(signum)
    assert daemon.proc.wait(15) == 0
    assert not _wait_gone(tree)
    assert not any((tmp_path / "morph" / "sandboxes").iterdir()) if (tmp_path / "morph" / "sandboxes").exists() \
        else True
    daemon.stop()


def test_shutdown_rpc_stops_instances_and_exits(tmp_path: Path) -> None:
    daemon = ProviderDaemon("morph", state_dir=tmp_path).start()
    stub = daemon.stub
    for _ in range(2):
        stub.Start(pb.StartRequest())
    tree = processes_under(str(tmp_path))
    reply = stub.Shutdown(pb.ShutdownRequest(host_id="test-host"))
    assert reply.instances_stopped == 2
    assert daemon.proc is not None and daemon.proc.wait(15) == 0
    assert not _wait_gone(tree)
    daemon.stop()


def test_sigkill_of_the_daemon_takes_its_sandboxes_with_it(tmp_path: Path) -> None:
    daemon = ProviderDaemon("morph", state_dir=tmp_path).start()
    daemon.stub.Start(pb.StartRequest())
    tree = processes_under(str(tmp_path))
    assert daemon.proc is not None
    daemon.proc.kill()
    daemon.proc.wait()
    assert not _wait_gone(tree)
    daemon.stop()


def test_the_next_daemon_removes_cgroups_a_killed_one_left(tmp_path: Path) -> None:
    killed = ProviderDaemon("morph", state_dir=tmp_path / "a").start()
    killed.stub.Start(pb.StartRequest())
    assert killed.proc is not None
    left = [p for p in Path("/sys/fs/cgroup").rglob(f"worldrt-morph-{killed.proc.pid}") if p.is_dir()]
    if not left:
        pytest.skip("no writable pids cgroup hierarchy here: instances are bounded by RLIMIT_NPROC instead")
    killed.proc.kill()
    killed.proc.wait()
    killed.stop()
    assert all(p.exists() for p in left), "a SIGKILLed daemon cannot clean up after itself"
    with ProviderDaemon("morph", state_dir=tmp_path / "b"):
        assert not any(p.exists() for p in left)
