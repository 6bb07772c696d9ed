"""modal over gRPC: one-shot runs in warm sandboxes, started sandboxes, disk snapshots, no leaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support import live_sandboxes, processes_under, run, status_of, wait_for, wait_gone
from worldrt.providers import serving, spawn_daemon
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def modal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    state = tmp_path_factory.mktemp("modal")
    with ProviderDaemon("modal", state_dir=state, options={"pool_size": "2", "lifetime_s": "4"}) as daemon:
        yield daemon


@pytest.fixture()
def mstub(modal: ProviderDaemon):
    return modal.stub


def _sandboxes(modal: ProviderDaemon) -> int:
    return live_sandboxes(modal.state_dir / "modal")


def test_one_shot_runs_leave_nothing_behind(mstub, modal: ProviderDaemon) -> None:
    first = mstub.Execute(pb.ExecuteRequest(
        code="open('left.txt', 'w').write('x')\nimport os\nos.environ['WORLDRT_INSTANCE_ID'], os.getuid()"))
    second = mstub.Execute(pb.ExecuteRequest(
        code="import os\nos.listdir('.'), os.environ['WORLDRT_INSTANCE_ID'], os.getuid()"))
    listing, *who = json.loads(second.value_json)
    assert listing == [] and who[0] != json.loads(first.value_json)[0] and who[1] != json.loads(first.value_json)[1]
    shell = mstub.Execute(pb.ExecuteRequest(code="echo hi; exit 4", language="shell"))
    assert (shell.stdout, shell.exit_code) == ("hi\n", 4)
    for _ in range(6):
        mstub.Execute(pb.ExecuteRequest(code="1"))
    seen: list[int] = []
    try:
        wait_for(lambda: seen.append(_sandboxes(modal)) or seen[-1] == 2, 30, "only the warm pool should remain")
    except AssertionError as exc:
        log = modal.log_path.read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}; sandboxes seen last: {seen[-5:]}\n{log}") from None


@pytest.mark.parametrize("size", [2, 6])
def test_health_says_serving_only_once_the_warm_pool_is_full(tmp_path: Path, size: int) -> None:
    """Health answered SERVING from the moment the socket did, before the provider was open: callers then
    raced the pool's first fill and left a sandbox more than the pool holds. A pool larger than the sandboxes
    started side by side (REFILL_AT_ONCE, 4) is full too."""
    address = f"unix:{tmp_path / 'modal.sock'}"
    proc = spawn_daemon("modal", address, tmp_path, tmp_path / "modal.log", options={"pool_size": str(size)})
    try:
        answered = wait_for(lambda: serving(address, 1.0) is not None or proc.poll() is not None, 60,
                            "the daemon's health did not answer")
        assert answered and proc.poll() is None, (tmp_path / "modal.log").read_text()[-2000:]
        assert serving(address, 1.0) is True
        assert live_sandboxes(tmp_path / "modal") == size, "SERVING before the warm pool was full"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    wait_gone(processes_under(str(tmp_path)))


def test_one_shot_stream(mstub) -> None:
    events = list(mstub.ExecuteStream(pb.ExecuteRequest(code="import time\nprint('a')\ntime.sleep(0.2)\nprint('b')")))
    assert [e.WhichOneof("event") for e in events] == ["stdout", "stdout", "result"]


def test_started_sandbox_keeps_state_until_stopped(mstub) -> None:
    iid = mstub.Start(pb.StartRequest()).instance_id
    run(mstub, iid, "total = 40")
    assert run(mstub, iid, "total + 2").value_json == "42"
    assert mstub.Stop(pb.InstanceRef(instance_id=iid)).status == pb.STOPPED
    assert status_of(lambda: run(mstub, iid, "1")) == grpc.StatusCode.FAILED_PRECONDITION


def test_disk_snapshot_restores_files_not_memory(mstub) -> None:
    iid = mstub.Start(pb.StartRequest()).instance_id
    run(mstub, iid, "import os\nos.makedirs('d', exist_ok=True)\nopen('d/f.txt', 'w').write('kept')\nin_memory = 1")
    snap = mstub.Snapshot(pb.SnapshotRequest(instance_id=iid))
    assert snap.kind == pb.DISK_ONLY and snap.size_bytes == 4
    copy = mstub.Start(pb.StartRequest(snapshot_id=snap.snapshot_id)).instance_id
    assert run(mstub, copy, "open('d/f.txt').read()").value_json == '"kept"'
    assert run(mstub, copy, "open('d/f.txt', 'a').write('!')").exit_code == 0, "restored files must be writable"
    assert run(mstub, copy, "in_memory").error.startswith("NameError")
    assert run(mstub, iid, "open('d/f.txt').read()").value_json == '"kept"'
    mstub.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))
    assert status_of(lambda: mstub.Start(pb.StartRequest(snapshot_id=snap.snapshot_id))) == grpc.StatusCode.NOT_FOUND
    for x in (iid, copy):
        mstub.Stop(pb.InstanceRef(instance_id=x))


def test_what_modal_lacks_names_morph(mstub) -> None:
    for call in (lambda: mstub.Branch(pb.BranchRequest(snapshot_id="s", count=1)),
                 lambda: mstub.Merge(pb.MergeRequest(instance_ids=["a"]))):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED and "morph" in info.value.details()
    caps = mstub.Capabilities(pb.CapabilitiesRequest())
    items = {c.name: json.loads(c.value_json) for c in caps.capabilities}
    assert caps.trit == 1 and items["snapshot_kind"] == "DISK_ONLY" and "not Modal" in items["engine"]
    assert "branch" not in caps.operations


def test_bad_input_and_the_pool_survives(mstub) -> None:
    assert status_of(lambda: mstub.Execute(pb.ExecuteRequest(code="while True: pass", timeout_ms=300))) == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    assert mstub.Execute(pb.ExecuteRequest(code="bytearray(20 * 2**30)")).error.startswith("MemoryError")
    net = mstub.Execute(pb.ExecuteRequest(code="import socket\nsocket.create_connection(('127.0.0.1', 22), 1)"))
    assert net.exit_code == 1
    assert status_of(lambda: run(mstub, "i-unknown", "1")) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: mstub.Snapshot(pb.SnapshotRequest(instance_id="nope"))) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: mstub.Execute(pb.ExecuteRequest(code="1", language="cobol"))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert mstub.Execute(pb.ExecuteRequest(code="6 * 7")).value_json == "42"


def test_a_sandbox_ends_at_its_lifetime(mstub) -> None:
    iid = mstub.Start(pb.StartRequest(ttl_s=600)).instance_id

    def ended() -> grpc.RpcError | None:
        try:
            run(mstub, iid, "1")
        except grpc.RpcError as exc:
            return exc
        return None

    refused = wait_for(ended, 20, "the sandbox did not end at its lifetime")
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION and "lifetime" in refused.details()


def test_sigterm_leaves_no_sandbox(tmp_path: Path) -> None:
    daemon = ProviderDaemon("modal", state_dir=tmp_path, options={"pool_size": "3"}).start()
    daemon.stub.Start(pb.StartRequest())
    tree = processes_under(str(tmp_path))
    assert len(tree) >= 7
    assert daemon.stop() == 0
    wait_gone(tree, 10)
