"""CallProvider and CallProviderStream: one generator operation through a source's link, recorded like a
component's import (how `worldrt api serve morph` reaches providers)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.support import HostProcess, cli, status_of
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path_factory.mktemp("provider-calls"))
    running.stub.PutLink(pb.LinkConfig(source_component="caller-api", interfaces=["generator"], target_provider="morph"))
    yield running
    running.stop()


def call(source: str = "caller-api", **request: object) -> host_pb.ProviderCallRequest:
    return host_pb.ProviderCallRequest(source=source, verse_id=77, **request)  # type: ignore[arg-type]


def test_operations_go_over_the_link_and_are_recorded(host: HostProcess) -> None:
    started = host.stub.CallProvider(call(start=pb.StartRequest(language="shell"))).instance
    assert started.provider_id == "morph" and started.status == pb.RUNNING
    iid = started.instance_id
    shell = pb.ExecuteRequest(instance_id=iid, language="shell", code="echo out; echo err >&2; exit 2")
    done = host.stub.CallProvider(call(execute=shell)).execution
    assert (done.stdout, done.stderr, done.exit_code) == ("out\n", "err\n", 2)
    events = list(host.stub.CallProviderStream(call(execute=shell)))
    assert [e.WhichOneof("event") for e in events] == ["execution"] * len(events)
    assert "".join(e.execution.stdout for e in events) == "out\n" and "".join(e.execution.stderr for e in events) == "err\n"
    assert events[-1].execution.result.exit_code == 2
    snap = host.stub.CallProvider(call(snapshot=pb.SnapshotRequest(instance_id=iid))).snapshot
    branched = host.stub.CallProvider(call(branch=pb.BranchRequest(snapshot_id=snap.snapshot_id, count=2))).branch
    assert len(branched.instances) == 2 and not branched.errors
    for member in [iid, *(i.instance_id for i in branched.instances), snap.snapshot_id]:
        assert host.stub.CallProvider(call(stop=pb.InstanceRef(instance_id=member))).instance.status == pb.STOPPED
    rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(limit=50, verse_id="77")).invocations
    ops = [r.operation for r in reversed(rows) if r.provider_id == "morph"]
    assert ops == ["start", "execute", "execute_stream", "snapshot", "branch", "stop", "stop", "stop", "stop"]
    listed = cli(host.home, "invocations", "--verse", "77", "--json")
    assert listed.returncode == 0 and "execute_stream" in listed.stdout


def test_bad_calls_say_what_to_change(host: HostProcess) -> None:
    for request, code, words in (
        (call(source=""), grpc.StatusCode.INVALID_ARGUMENT, "source is required"),
        (call(), grpc.StatusCode.INVALID_ARGUMENT, "names no operation"),
        (call(source="unlinked", start=pb.StartRequest()), grpc.StatusCode.FAILED_PRECONDITION, "link it with"),
        (call(stop=pb.InstanceRef(instance_id="i-nope")), grpc.StatusCode.NOT_FOUND, "i-nope"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            host.stub.CallProvider(request)
        assert info.value.code() == code and words in info.value.details(), info.value.details()
    assert status_of(lambda: list(host.stub.CallProviderStream(call(start=pb.StartRequest())))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(lambda: list(host.stub.CallProviderStream(call(source="unlinked", execute=pb.ExecuteRequest(
        instance_id="i-x", code="1"))))) == grpc.StatusCode.FAILED_PRECONDITION

