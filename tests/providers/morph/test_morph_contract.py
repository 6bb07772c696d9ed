"""morph over gRPC: start, execute, snapshot, branch, merge, streaming, links, capabilities."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.providers.morph.conftest import BOTH_BACKENDS
from tests.support import run, status_of, wait_for
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


def test_namespace_persists_and_value_is_the_last_expression(stub, instance: str) -> None:
    first = run(stub, instance, "x = 20\nprint('hello')\nimport sys; print('oops', file=sys.stderr)\nx + 1")
    assert (first.stdout, first.stderr, first.value_json, first.exit_code) == ("hello\n", "oops\n", "21", 0)
    assert run(stub, instance, "x * 2").value_json == "40"
    assert run(stub, instance, "y = {'a': [1, 2]}").value_json == ""
    assert json.loads(run(stub, instance, "y").value_json) == {"a": [1, 2]}
    assert run(stub, instance, "object()").value_json.startswith('"<object object')


def test_exceptions_are_reported_and_the_instance_survives(stub, instance: str) -> None:
    result = run(stub, instance, "1 / 0")
    assert result.exit_code == 1 and result.error.startswith("ZeroDivisionError")
    assert "ZeroDivisionError" in result.stderr
    assert run(stub, instance, "def f(:").error.startswith("SyntaxError")
    assert run(stub, instance, "2 + 2").value_json == "4"


def test_metering_is_reported(stub, instance: str) -> None:
    result, call = stub.Execute.with_call(pb.ExecuteRequest(instance_id=instance, code="sum(range(300000))"))
    assert result.cpu_ms > 0 and result.duration_ms > 0
    trailers = dict(call.trailing_metadata())
    # The cost travels once, in the trailer; the reply's cost_units is the host's to fill.
    assert float(trailers["x-worldrt-cost-units"]) > 0 and result.cost_units == 0
    assert set(trailers) == {"x-worldrt-cost-units"}


@BOTH_BACKENDS
def test_shell_runs_in_the_workspace(stub, instance: str) -> None:
    run(stub, instance, "open('note.txt', 'w').write('from python')")
    result = run(stub, instance, "cat note.txt; echo; pwd; echo bad >&2; exit 3", language="shell")
    lines = result.stdout.splitlines()
    assert lines[0] == "from python" and lines[1] == "/workspace"
    assert result.stderr == "bad\n" and result.exit_code == 3


@pytest.mark.parametrize(
    ("language", "code", "expected"),
    [
        ("js", "console.log(6 * 7)", "42\n"),
        ("cpp", "#include <cstdio>\nint main(){ std::printf(\"%d\\n\", 6 * 7); }", "42\n"),
    ],
)
def test_every_advertised_language_runs(stub, instance: str, language: str, code: str, expected: str) -> None:
    languages = stub.Capabilities(pb.CapabilitiesRequest()).languages
    assert {"python", "shell"} <= set(languages)
    if language not in languages:
        pytest.skip(f"{language} toolchain is not installed on this machine, and morph does not advertise it")
    result = run(stub, instance, code, language=language, timeout_ms=60_000)
    assert (result.stdout, result.exit_code) == (expected, 0), result.stderr


@BOTH_BACKENDS
def test_unknown_language_is_invalid(stub, instance: str) -> None:
    assert status_of(lambda: run(stub, instance, "1", language="cobol")) == grpc.StatusCode.INVALID_ARGUMENT


def test_execute_stream_delivers_output_as_it_is_produced(stub, instance: str) -> None:
    code = "import time\nfor k in range(3):\n    print(k)\n    time.sleep(0.2)\n'end'"
    arrivals = []
    for event in stub.ExecuteStream(pb.ExecuteRequest(instance_id=instance, code=code)):
        arrivals.append((time.monotonic(), event))
    kinds = [e.WhichOneof("event") for _, e in arrivals]
    assert kinds == ["stdout", "stdout", "stdout", "result"]
    assert arrivals[-1][1].result.value_json == '"end"'
    assert arrivals[-1][0] - arrivals[0][0] > 0.3, "the first line arrived only at the end"


def test_snapshot_and_branches_diverge_in_memory_and_files(stub, instance: str) -> None:
    run(stub, instance, "state = {'n': 1}\nopen('shared.txt', 'w').write('base')")
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    assert snap.kind == pb.MEMORY_AND_DISK and snap.size_bytes > 0 and snap.instance_id == instance
    run(stub, instance, "state['n'] = 999")  # the source moves on; the snapshot must not
    reply = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=3))
    assert len(reply.instances) == 3 and not reply.errors
    ids = [i.instance_id for i in reply.instances]
    assert len(set(ids)) == 3 and all(i.snapshot_id == snap.snapshot_id for i in reply.instances)
    for k, iid in enumerate(ids):
        assert run(stub, iid, "state['n']").value_json == "1"
        run(stub, iid, f"state['n'] = {k}\nopen('shared.txt', 'a').write('-{k}')")
    for k, iid in enumerate(ids):
        assert run(stub, iid, "state['n'], open('shared.txt').read()").value_json == json.dumps([k, f"base-{k}"])
    assert run(stub, instance, "state['n'], open('shared.txt').read()").value_json == json.dumps([999, "base"])
    seeds = {run(stub, iid, "import random; random.random()").value_json for iid in ids}
    assert len(seeds) == 3, "branches share a random seed"
    for iid in ids:
        stub.Stop(pb.InstanceRef(instance_id=iid))


def test_branches_come_up_with_the_instances_open_files_at_their_offsets(stub, instance: str) -> None:
    """A branch reopens the files the instance had open at the same descriptors: with 24 of them, those
    descriptors cover where each branch's own channel to the daemon lands, which must be moved, not clobbered."""
    run(stub, instance, "files = []\nfor k in range(24):\n    open(f'f{k}.txt', 'w').write(f'{k:02d}' * 4)\n"
                        "    files.append(open(f'f{k}.txt'))\n    files[-1].read(k % 8)\n"
                        "[f.fileno() for f in files][-1]")
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    reply = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=3))
    assert len(reply.instances) == 3 and not reply.errors, reply.errors
    read = "[(f.fileno(), f.read()) for f in files]"
    expected = json.loads(run(stub, instance, read).value_json)
    assert [text for _, text in expected] == [(f"{k:02d}" * 4)[k % 8:] for k in range(24)]
    for inst in reply.instances:
        assert json.loads(run(stub, inst.instance_id, read).value_json) == expected
        stub.Stop(pb.InstanceRef(instance_id=inst.instance_id))
    stub.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))


def test_branches_come_up_when_the_instance_used_its_last_descriptor(stub, instance: str) -> None:
    """The instance's open files run up to the last descriptor its limit allows: a branch's channel cannot
    go above them; it takes a free one between them."""
    run(stub, instance, "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
                        "open('a.txt', 'w').write('x')\nfiles = []\ntry:\n    while True:\n"
                        "        files.append(open('a.txt'))\nexcept OSError:\n    pass\n"
                        "for f in files[20:40]:\n    f.close()")
    held = "import os\n[f.fileno() for f in files if not f.closed and os.pread(f.fileno(), 1, 0) == b'x']"
    expected = json.loads(run(stub, instance, held).value_json)
    assert expected[-1] == 63 and len(expected) > 30
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    reply = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=3))
    assert len(reply.instances) == 3 and not reply.errors, reply.errors
    for inst in reply.instances:
        assert json.loads(run(stub, inst.instance_id, held).value_json) == expected
        stub.Stop(pb.InstanceRef(instance_id=inst.instance_id))
    stub.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))


def test_branches_reseed_numpy_when_it_is_loaded(stub, instance: str) -> None:
    run(stub, instance, "import numpy as np\nnp.random.seed(7)")
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    ids = [i.instance_id for i in stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=3)).instances]
    draws = {run(stub, iid, "float(np.random.random())").value_json for iid in ids}
    assert len(draws) == 3
    for iid in ids:
        stub.Stop(pb.InstanceRef(instance_id=iid))


def test_start_from_a_snapshot(stub, instance: str) -> None:
    run(stub, instance, "seed_value = 'kept'")
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    again = stub.Start(pb.StartRequest(snapshot_id=snap.snapshot_id))
    assert again.snapshot_id == snap.snapshot_id
    assert run(stub, again.instance_id, "seed_value").value_json == '"kept"'
    stub.Stop(pb.InstanceRef(instance_id=again.instance_id))


@pytest.mark.parametrize(("rule", "expected"), [("max", 2), ("min", 0)])
def test_merge_keeps_the_oracles_winner_and_stops_the_rest(stub, instance: str, rule: str, expected: int) -> None:
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    ids = [i.instance_id for i in stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=3)).instances]
    scores = {iid: float(k) for k, iid in enumerate(ids)}
    winner = stub.Merge(pb.MergeRequest(instance_ids=ids, oracle=pb.OracleResult(rule=rule, scores=scores)))
    assert winner.instance_id == ids[expected] and winner.status == pb.RUNNING
    assert run(stub, winner.instance_id, "1").value_json == "1"
    for k, iid in enumerate(ids):
        if k != expected:
            assert status_of(lambda iid=iid: run(stub, iid, "1")) == grpc.StatusCode.FAILED_PRECONDITION
    stub.Stop(pb.InstanceRef(instance_id=winner.instance_id))


@BOTH_BACKENDS
def test_merge_by_explicit_winner(stub, instance: str) -> None:
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    ids = [i.instance_id for i in stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=2)).instances]
    winner = stub.Merge(pb.MergeRequest(instance_ids=ids, oracle=pb.OracleResult(winner_id=ids[1])))
    assert winner.instance_id == ids[1]
    bad = pb.MergeRequest(instance_ids=[ids[1]], oracle=pb.OracleResult(winner_id="i-nope"))
    assert status_of(lambda: stub.Merge(bad)) == grpc.StatusCode.INVALID_ARGUMENT
    missing = pb.MergeRequest(instance_ids=[ids[1]], oracle=pb.OracleResult(rule="max"))
    assert status_of(lambda: stub.Merge(missing)) == grpc.StatusCode.INVALID_ARGUMENT
    stub.Stop(pb.InstanceRef(instance_id=ids[1]))


def test_stop_reports_stopped_and_later_calls_fail(stub) -> None:
    inst = stub.Start(pb.StartRequest())
    assert stub.Stop(pb.InstanceRef(instance_id=inst.instance_id)).status == pb.STOPPED
    assert status_of(lambda: run(stub, inst.instance_id, "1")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_of(lambda: stub.Snapshot(pb.SnapshotRequest(instance_id=inst.instance_id))) in (
        grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


def test_limits_from_the_request_apply(stub) -> None:
    inst = stub.Start(pb.StartRequest(limits=pb.Limits(memory_mb=256, cpu_s=20, processes=8)))
    assert (inst.limits.memory_mb, inst.limits.processes) == (256, 8)
    limits = run(stub, inst.instance_id, "import resource\nresource.getrlimit(resource.RLIMIT_AS)[1] // 2**20, "
                                          "resource.getrlimit(resource.RLIMIT_CPU)[1]").value_json
    assert json.loads(limits) == [256, 20]
    assert run(stub, inst.instance_id, "x = bytearray(400 * 2**20)").error.startswith("MemoryError")
    stub.Stop(pb.InstanceRef(instance_id=inst.instance_id))


def test_idle_instances_and_unused_snapshots_are_reaped(stub) -> None:
    inst = stub.Start(pb.StartRequest(ttl_s=1))
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=inst.instance_id, ttl_s=1))

    def gone(call: Callable[[], object], code: grpc.StatusCode) -> bool:
        try:
            call()
        except grpc.RpcError as exc:
            return exc.code() == code
        return False

    # Each look is a use that starts the idle time again, so look less often than the 1 s it lasts.
    wait_for(lambda: gone(lambda: run(stub, inst.instance_id, "1"), grpc.StatusCode.FAILED_PRECONDITION), 20,
             "the idle instance was not reaped", interval_s=1.5)
    wait_for(lambda: gone(lambda: stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=1)),
                          grpc.StatusCode.NOT_FOUND), 20, "the unused snapshot was not reaped", interval_s=1.5)


@BOTH_BACKENDS
def test_links_are_put_replaced_and_deleted(stub) -> None:
    link = pb.LinkConfig(link_id="l1", source_component="explorer", target_provider="morph", name="default",
                         interfaces=["worldrt:verse/generator"], values={"k": "1"})
    first = stub.ReceiveLinkConfig(link)
    assert (first.existed, first.links) == (False, 1)
    link.values["k"] = "2"
    again = stub.ReceiveLinkConfig(link)
    assert (again.existed, again.links) == (True, 1)
    assert stub.DeleteLink(pb.LinkConfig(link_id="l1")).existed
    assert not stub.DeleteLink(pb.LinkConfig(link_id="l1")).existed
    wrong = pb.LinkConfig(link_id="l2", target_provider="gensyn")
    assert status_of(lambda: stub.ReceiveLinkConfig(wrong)) == grpc.StatusCode.INVALID_ARGUMENT


def test_a_link_sets_the_default_limits_of_its_callers_instances(stub) -> None:
    """wasmCloud-style per-source link config: the values of the link a call came through are its
    defaults; another component, or a request's own limits, are not affected."""
    stub.ReceiveLinkConfig(pb.LinkConfig(link_id="small/generator/default", source_component="small",
                                         target_provider="morph", name="default", interfaces=["generator"],
                                         values={"memory_mb": "96", "processes": "8"}))
    stub.ReceiveLinkConfig(pb.LinkConfig(link_id="odd/generator/fast", source_component="odd",
                                         target_provider="morph", name="fast", interfaces=["generator"],
                                         values={"memory_mb": "lots"}))
    try:
        def start(source: str, link: str = "default", **limits: int) -> pb.Instance:
            request = pb.StartRequest(limits=pb.Limits(**limits)) if limits else pb.StartRequest()
            instance = stub.Start(request, metadata=(("x-worldrt-source", source), ("x-worldrt-link-name", link)))
            stub.Stop(pb.InstanceRef(instance_id=instance.instance_id))
            return instance

        small = start("small")
        assert (small.limits.memory_mb, small.limits.processes) == (96, 8)
        assert start("small", memory_mb=128).limits.memory_mb == 128
        assert start("other").limits.memory_mb == 1024
        assert start("small", link="fast").limits.memory_mb == 1024
        with pytest.raises(grpc.RpcError) as info:
            start("odd", link="fast")
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "memory_mb='lots' is not a whole number" in info.value.details()
    finally:
        stub.DeleteLink(pb.LinkConfig(link_id="small/generator/default"))
        stub.DeleteLink(pb.LinkConfig(link_id="odd/generator/fast"))


def test_init_and_capabilities(stub) -> None:
    assert stub.Init(pb.ProviderConfig(provider_id="morph", values={"a": "b"})).trit == 1
    caps = stub.Capabilities(pb.CapabilitiesRequest())
    assert (caps.provider_id, caps.trit) == ("morph", 1)
    items = {c.name: json.loads(c.value_json) for c in caps.capabilities}
    assert items["snapshot_kind"] == "MEMORY_AND_DISK"
    assert "not Morph Cloud" in items["engine"]
    assert {"start", "snapshot", "branch", "merge", "execute"} <= set(caps.operations)


@BOTH_BACKENDS
def test_operations_it_lacks_name_the_provider_that_has_them(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Optimize(pb.OptimizeRequest())
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED and "primeintellect" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.Verify(pb.VerifyRequest())
    assert "gensyn" in info.value.details()


def test_health_and_reflection(morph: ProviderDaemon) -> None:
    health = health_pb2_grpc.HealthStub(morph.channel)
    for service in ("", "worldrt.v1.WorldRuntime"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(morph.channel)
    replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in next(iter(replies)).list_services_response.service}
    assert {"worldrt.v1.WorldRuntime", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_stop_releases_a_snapshot(stub, instance: str) -> None:
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    released = stub.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))
    assert released.status == pb.STOPPED and released.snapshot_id == snap.snapshot_id
    assert status_of(lambda: stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=1))) == \
        grpc.StatusCode.NOT_FOUND
    assert run(stub, instance, "'source intact'").value_json == '"source intact"'


def test_output_of_subprocesses_and_c_level_writes_is_captured(stub, instance: str) -> None:
    result = run(stub, instance, "import os, subprocess\nos.write(1, b'raw\\n')\nsubprocess.run(['echo', 'child'])\n"
                                 "os.write(2, b'raw-err\\n')")
    assert result.stdout == "raw\nchild\n" and result.stderr == "raw-err\n"
    assert run(stub, instance, "os.write(1, b'again\\n')").stdout == "again\n"


def test_exit_codes_of_python_code(stub, instance: str) -> None:
    assert run(stub, instance, "import sys; sys.exit(3)").exit_code == 3
    assert run(stub, instance, "exit(5)").exit_code == 5
    assert run(stub, instance, "raise SystemExit").exit_code == 0
    assert run(stub, instance, "'still here'").value_json == '"still here"'


@pytest.mark.parametrize("size", [10, 300_000])
def test_unary_and_streamed_runs_return_the_same_output(stub, instance: str, size: int) -> None:
    """A unary Execute gets its output with the result (or streamed, past what one frame carries): either
    way the same text, in order, as ExecuteStream's events."""
    code = (f"import sys\nfor i in range(50):\n    print(i, 'x' * {size // 50})\n    print('e', i, file=sys.stderr)\n"
            "'end'")
    unary = run(stub, instance, code)
    events = list(stub.ExecuteStream(pb.ExecuteRequest(instance_id=instance, code=code)))
    streamed = "".join(e.stdout for e in events), "".join(e.stderr for e in events)
    expected = "".join(f"{i} {'x' * (size // 50)}\n" for i in range(50))
    assert (unary.stdout, unary.stderr, unary.value_json) == (expected, streamed[1], '"end"')
    assert streamed[0] == expected and events[-1].result.value_json == '"end"'
