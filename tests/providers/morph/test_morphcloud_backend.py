"""morph's morphcloud backend (`provider serve morph --backend morphcloud`) as a client of Morph Cloud's
REST API. Morph Cloud itself cannot be reached from this machine: these tests run the backend against
worldrt's own `api serve morph`, which the official SDK's tests (tests/host/api) hold to Morph's wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from tests.support import MorphApiServer, run, status_of
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


@pytest.fixture()
def cloud(morph_cloud: ProviderDaemon) -> object:
    return morph_cloud.stub


@pytest.fixture()
def started(cloud) -> Iterator[str]:
    inst = cloud.Start(pb.StartRequest(language="shell"))
    yield inst.instance_id
    try:
        cloud.Stop(pb.InstanceRef(instance_id=inst.instance_id))
    except grpc.RpcError:
        pass


def test_capabilities_name_the_backend_and_claim_only_what_it_does(cloud, morph_api: MorphApiServer) -> None:
    caps = cloud.Capabilities(pb.CapabilitiesRequest())
    items = {c.name: json.loads(c.value_json) for c in caps.capabilities}
    assert (caps.provider_id, caps.trit) == ("morph", 1)
    assert items["backend"] == "morphcloud" and items["base_url"] == morph_api.base_url
    assert morph_api.base_url in items["engine"] and "local" not in items["engine"].split("(")[0]
    assert "no interpreter state" in items["python"]
    assert sorted(caps.languages) == ["python", "shell"]
    assert "isolation" not in items and "state_preservation" not in items


def test_start_execute_and_python_without_state(cloud, started: str) -> None:
    shell = run(cloud, started, "echo hi; echo oops >&2; exit 3", language="shell")
    assert (shell.stdout, shell.stderr, shell.exit_code, shell.instance_id) == ("hi\n", "oops\n", 3, started)
    assert run(cloud, started, "echo $GREETING-$OTHER", language="shell",
               env={"GREETING": "hello world", "OTHER": "x"}).stdout == "hello world-x\n"
    assert run(cloud, started, "x = 20\nprint(x + 1)").stdout == "21\n"
    forgotten = run(cloud, started, "print(x)")
    assert forgotten.exit_code == 1 and "NameError" in forgotten.stderr and forgotten.value_json == ""


def test_execute_stream_over_sse(cloud, started: str) -> None:
    events = list(cloud.ExecuteStream(pb.ExecuteRequest(instance_id=started, language="shell",
                                                        code="echo one; echo two >&2; echo three; exit 5")))
    assert "".join(e.stdout for e in events) == "one\nthree\n" and "".join(e.stderr for e in events) == "two\n"
    assert events[-1].WhichOneof("event") == "result" and events[-1].result.exit_code == 5
    assert status_of(lambda: list(cloud.ExecuteStream(pb.ExecuteRequest(instance_id="i-nope", code="1")))) == \
        grpc.StatusCode.NOT_FOUND


def test_snapshot_branch_merge_and_stop(cloud, started: str) -> None:
    run(cloud, started, "echo base > f", language="shell")
    snap = cloud.Snapshot(pb.SnapshotRequest(instance_id=started))
    assert snap.kind == pb.MEMORY_AND_DISK and snap.instance_id == started and snap.snapshot_id
    run(cloud, started, "echo moved-on > f", language="shell")
    reply = cloud.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=3))
    assert not reply.errors and len({i.instance_id for i in reply.instances}) == 3
    ids = [i.instance_id for i in reply.instances]
    for k, iid in enumerate(ids):
        assert run(cloud, iid, "cat f", language="shell").stdout == "base\n"
        run(cloud, iid, f"echo {k} >> f", language="shell")
    for k, iid in enumerate(ids):
        assert run(cloud, iid, "cat f", language="shell").stdout == f"base\n{k}\n"
    assert run(cloud, started, "cat f", language="shell").stdout == "moved-on\n"
    again = cloud.Start(pb.StartRequest(snapshot_id=snap.snapshot_id))
    assert again.snapshot_id == snap.snapshot_id
    assert run(cloud, again.instance_id, "cat f", language="shell").stdout == "base\n"
    winner = cloud.Merge(pb.MergeRequest(instance_ids=ids, oracle=pb.OracleResult(
        rule="max", scores={iid: float(k) for k, iid in enumerate(ids)})))
    assert winner.instance_id == ids[2] and winner.status == pb.RUNNING
    for loser in ids[:2]:
        assert status_of(lambda loser=loser: run(cloud, loser, "true", language="shell")) == grpc.StatusCode.NOT_FOUND
    assert cloud.Stop(pb.InstanceRef(instance_id=winner.instance_id)).status == pb.STOPPED
    assert cloud.Stop(pb.InstanceRef(instance_id=again.instance_id)).status == pb.STOPPED
    released = cloud.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))
    assert released.status == pb.STOPPED and released.snapshot_id == snap.snapshot_id
    assert status_of(lambda: cloud.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=1))) == \
        grpc.StatusCode.NOT_FOUND


def test_bad_input_maps_to_grpc_codes(cloud, started: str) -> None:
    assert status_of(lambda: run(cloud, started, "echo", language="cobol")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(lambda: cloud.Start(pb.StartRequest(image="no-such-image"))) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: cloud.Start(pb.StartRequest(ttl_s=-1))) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(lambda: cloud.Optimize(pb.OptimizeRequest())) == grpc.StatusCode.UNIMPLEMENTED


def test_flags_a_wrong_key_and_shutdown(tmp_path, morph_api: MorphApiServer) -> None:
    """The CLI flags pick the backend; Morph's 401 is UNAUTHENTICATED; on SIGTERM it deletes what it made."""
    args = ("--backend", "morphcloud", "--base-url", morph_api.base_url)
    with ProviderDaemon("morph", state_dir=tmp_path / "wrong", serve_args=(*args, "--api-key", "wrong")) as wrong:
        with pytest.raises(grpc.RpcError) as info:
            wrong.stub.Start(pb.StartRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "401" in info.value.details()
    client = morph_api.client()
    with ProviderDaemon("morph", state_dir=tmp_path / "right", serve_args=(*args, "--api-key", morph_api.key)) as right:
        made = right.stub.Start(pb.StartRequest()).instance_id
        assert made in {i.id for i in client.instances.list()}
    assert made not in {i.id for i in client.instances.list()}
    assert "1 instance(s) stopped" in (tmp_path / "right" / "morph.log").read_text()
