"""Bad input against the running morph daemon: each gets a clear status and the daemon keeps serving."""

from __future__ import annotations

import json
import socket
import time

import grpc
import pytest

from tests.providers.morph.conftest import BOTH_BACKENDS
from tests.support import alive, run, status_of
from worldrt.providers.testing import ProviderDaemon, pids_of_uid
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


@pytest.fixture(autouse=True)
def still_serving(stub, backend: str):
    yield
    assert stub.Capabilities(pb.CapabilitiesRequest()).provider_id == "morph"
    check = stub.Start(pb.StartRequest())
    if backend == "morphcloud":  # python keeps no value there: each Execute is `python3 -c`
        assert run(stub, check.instance_id, "print(40 + 2)").stdout == "42\n"
    else:
        assert run(stub, check.instance_id, "40 + 2").value_json == "42"
    stub.Stop(pb.InstanceRef(instance_id=check.instance_id))


@BOTH_BACKENDS
def test_unknown_ids_are_not_found(stub) -> None:
    assert status_of(lambda: run(stub, "i-000000000000", "1")) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: stub.Stop(pb.InstanceRef(instance_id="nope"))) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: stub.Snapshot(pb.SnapshotRequest(instance_id="nope"))) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: stub.Branch(pb.BranchRequest(snapshot_id="s-nope", count=1))) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: stub.Start(pb.StartRequest(snapshot_id="s-nope"))) == grpc.StatusCode.NOT_FOUND
    merge = pb.MergeRequest(instance_ids=["i-x"], oracle=pb.OracleResult(winner_id="i-x"))
    assert status_of(lambda: stub.Merge(merge)) == grpc.StatusCode.NOT_FOUND


@BOTH_BACKENDS
@pytest.mark.parametrize("count", [0, 257, 1_000_000])
def test_branch_count_out_of_range_is_invalid(stub, instance: str, count: int) -> None:
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    with pytest.raises(grpc.RpcError) as info:
        stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=count))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("at least 1" if count == 0 else "maximum of 256") in info.value.details()


@pytest.mark.parametrize("limits", [pb.Limits(memory_mb=-1), pb.Limits(memory_mb=10**9), pb.Limits(processes=-5)])
@BOTH_BACKENDS
def test_bad_limits_are_invalid(stub, limits: pb.Limits) -> None:
    assert status_of(lambda: stub.Start(pb.StartRequest(limits=limits))) == grpc.StatusCode.INVALID_ARGUMENT


def test_endless_loop_hits_its_deadline_and_the_instance_survives(stub, instance: str) -> None:
    run(stub, instance, "kept = 'yes'")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        run(stub, instance, "print('before')\nwhile True:\n    pass", timeout_ms=500)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "still running" in info.value.details()
    assert time.monotonic() - started < 5
    partial = dict(info.value.trailing_metadata())["x-worldrt-partial-result-bin"]
    assert pb.ExecutionResult.FromString(partial).stdout == "before\n"
    assert run(stub, instance, "kept").value_json == '"yes"'


def test_code_that_ignores_the_interrupt_is_stopped(stub, instance: str) -> None:
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    with pytest.raises(grpc.RpcError) as info:
        run(stub, instance, code, timeout_ms=300)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "was stopped" in info.value.details()
    assert status_of(lambda: run(stub, instance, "1")) == grpc.StatusCode.FAILED_PRECONDITION


def test_shell_loop_hits_its_deadline(stub, instance: str) -> None:
    assert status_of(lambda: run(stub, instance, "while true; do :; done", language="shell", timeout_ms=300)) == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    assert run(stub, instance, "echo ok", language="shell").stdout == "ok\n"


def test_allocating_20_gb_is_a_memory_error_inside(stub, instance: str) -> None:
    result = run(stub, instance, "block = bytearray(20 * 2**30)")
    assert result.exit_code == 1 and result.error.startswith("MemoryError")
    assert run(stub, instance, "len(bytearray(10 * 2**20))").value_json == str(10 * 2**20)


def test_a_fork_bomb_is_bounded_and_dies_with_its_instance(stub) -> None:
    inst = stub.Start(pb.StartRequest(limits=pb.Limits(processes=16)))
    iid = inst.instance_id
    uid = int(run(stub, iid, "import os; os.getuid()").value_json)
    bomb = ("import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)")
    assert status_of(lambda: run(stub, iid, bomb, timeout_ms=1500)) == grpc.StatusCode.DEADLINE_EXCEEDED
    count = int(run(stub, iid, "import os; sum(1 for p in os.listdir('/proc') if p.isdigit())").value_json)
    # the bomb, bounded by the instance's 16, plus the sandbox's init and zygote
    assert count <= 16 + 2, count
    stub.Stop(pb.InstanceRef(instance_id=iid))
    deadline = time.monotonic() + 5
    while _pids_of_uid(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pids_of_uid(uid)


def _pids_of_uid(uid: int) -> set[int]:
    return alive(pids_of_uid(uid))


def test_secrets_and_the_host_filesystem_are_out_of_reach(stub, instance: str, morph: ProviderDaemon) -> None:
    assert run(stub, instance, "open('/etc/shadow').read()").error.split(":")[0] in (
        "FileNotFoundError", "PermissionError")
    for path in ("/usr/evil", "/etc/evil", "/evil", "/opt/worldrt/evil", f"{morph.state_dir}/evil"):
        result = run(stub, instance, f"open({path!r}, 'w').write('x')")
        assert result.exit_code == 1 and result.error.split(":")[0] in (
            "OSError", "PermissionError", "FileNotFoundError"), (path, result.error)
        assert not (morph.state_dir / "evil").exists()
    assert run(stub, instance, "open('mine.txt', 'w').write('ok')").value_json == "2"


def test_the_network_is_unreachable(stub, instance: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)"
        result = run(stub, instance, code)
        assert result.exit_code == 1 and result.error.split(":")[0] in (
            "ConnectionRefusedError", "OSError", "TimeoutError"), result.error
        dns = run(stub, instance, "import socket\nsocket.getaddrinfo('pypi.org', 443)")
        assert dns.exit_code == 1
    finally:
        listener.close()


def test_instances_started_separately_cannot_see_each_other(stub, morph: ProviderDaemon) -> None:
    a = stub.Start(pb.StartRequest()).instance_id
    b = stub.Start(pb.StartRequest()).instance_id
    where = json.loads(run(stub, a, "import os\nopen('secret.txt', 'w').write('a')\nos.getcwd()").value_json)
    # A workspace lives in its sandbox's memory: no copy of it is on the host's disk to aim at.
    assert not list(morph.state_dir.rglob("secret.txt"))
    assert run(stub, b, f"open({where + '/secret.txt'!r}).read()").exit_code == 1
    assert run(stub, b, f"open({where + '/secret.txt'!r}, 'w').write('b')").value_json == "1"  # b's own file
    assert run(stub, a, "open('secret.txt').read()").value_json == '"a"'
    for iid in (a, b):
        stub.Stop(pb.InstanceRef(instance_id=iid))


def test_calls_on_a_merged_away_instance_fail(stub, instance: str) -> None:
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    ids = [i.instance_id for i in stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=2)).instances]
    stub.Merge(pb.MergeRequest(instance_ids=ids, oracle=pb.OracleResult(winner_id=ids[0])))
    for call in (lambda: run(stub, ids[1], "1"), lambda: stub.Snapshot(pb.SnapshotRequest(instance_id=ids[1])),
                 lambda: stub.Merge(pb.MergeRequest(instance_ids=ids, oracle=pb.OracleResult(winner_id=ids[0])))):
        assert status_of(call) in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)
    stub.Stop(pb.InstanceRef(instance_id=ids[0]))


def test_code_that_kills_its_interpreter_stops_the_instance(stub) -> None:
    iid = stub.Start(pb.StartRequest()).instance_id
    assert status_of(lambda: run(stub, iid, "import os; os._exit(3)")) == grpc.StatusCode.ABORTED
    assert status_of(lambda: run(stub, iid, "1")) == grpc.StatusCode.FAILED_PRECONDITION


def test_huge_output_is_truncated_not_fatal(stub, instance: str) -> None:
    result = run(stub, instance, "print('x' * (40 * 2**20))")
    assert len(result.stdout) < 3 * 2**20 and "output truncated" in result.stdout
