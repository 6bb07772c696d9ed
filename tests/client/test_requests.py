"""What the client sends and how it reads answers, without a host: the requests its arguments make, the
link it puts, and replies decoded into typed values (branch failures as error kinds)."""

from __future__ import annotations

import pytest

from worldrt.client import ExecResult, InstanceInfo, Limits, LogLine, Oracle, ProviderCall
from worldrt.client import _requests as requests
from worldrt.client._results import event_of
from worldrt.client._types import branch_failure
from worldrt.errors import InvalidArgument, ResourceExhausted, Unavailable
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.pure


class _Handle:
    def __init__(self, ident: str, provider: str = "morph") -> None:
        self.id, self.provider = ident, provider


def test_exec_sends_code_or_a_command_and_its_timeout_in_ms() -> None:
    code = requests.execute("i-1", "1 + 1", language="python", argv=None, env={"A": "b"}, timeout_s=2.5)
    assert (code.code, list(code.argv), dict(code.env), code.timeout_ms) == ("1 + 1", [], {"A": "b"}, 2500)
    command = requests.execute("i-1", "ignored", language="python", argv=["ls", "-l"], env=None, timeout_s=None)
    assert (command.code, list(command.argv), command.timeout_ms) == ("", ["ls", "-l"], 0)
    for bad in ({"code": ""}, {"code": "x", "argv": "ls -l"}, {"code": "x", "timeout_s": 0}):
        with pytest.raises(InvalidArgument):
            requests.execute("i-1", **{"language": "python", "argv": None, "env": None, "timeout_s": None, **bad})


def test_start_sends_what_was_given_and_leaves_the_rest_to_the_provider() -> None:
    given = requests.start(image="quant", limits=Limits(memory_mb=256), ttl_s=60, metadata={"k": "v"})
    assert (given.image, given.limits.memory_mb, given.ttl_s, dict(given.metadata)) == ("quant", 256, 60, {"k": "v"})
    assert not requests.start(image=None, limits=None, ttl_s=None, metadata=None).HasField("limits")
    with pytest.raises(InvalidArgument, match="ttl_s"):
        requests.start(image=None, limits=None, ttl_s=-1, metadata=None)


def test_a_merge_names_its_winner_by_instance_id_or_scores() -> None:
    a, b = _Handle("i-a"), _Handle("i-b")
    provider, by_scores = requests.merge_of([a, b], {a: 1.0, "i-b": 2})
    assert provider == "morph" and dict(by_scores.oracle.scores) == {"i-a": 1.0, "i-b": 2.0}
    assert requests.merge_of([a, b], b)[1].oracle.winner_id == "i-b"
    assert requests.merge_of([a, b], Oracle(scores={"i-a": 1}, rule="min"))[1].oracle.rule == "min"
    with pytest.raises(InvalidArgument, match="not one of"):
        requests.merge_of([a, b], "i-c")
    with pytest.raises(InvalidArgument, match="one provider"):
        requests.merge_of([a, _Handle("i-m", "modal")], a)
    with pytest.raises(InvalidArgument):
        requests.merge_of([], a)


def test_the_client_puts_its_link_only_when_its_source_has_none_to_the_provider() -> None:
    assert requests.source_for("modal") == "client-modal"
    put = requests.link_to_put([], "morph")
    assert put is not None and (put.source_component, list(put.interfaces), put.target_provider) == (
        "client-morph", ["generator"], "morph")
    own = pb.LinkConfig(source_component="client-morph", interfaces=["generator"], target_provider="morph",
                        name="default", values={"memory_mb": "256"})
    assert requests.link_to_put([own], "morph") is None
    anyone = pb.LinkConfig(source_component="*", interfaces=["generator"], target_provider="modal", name="default")
    assert requests.link_to_put([anyone], "morph") is not None
    assert requests.link_id("generator", source="x", name="default") == "x/generator/default"
    assert requests.link_id("a/b/c", source="x", name="default") == "a/b/c"


def test_replies_become_typed_values() -> None:
    result = ExecResult.of(pb.ExecutionResult(stdout="o", exit_code=0, value_json='{"a": [1]}', duration_ms=1.5))
    assert (result.value, result.ok, result.duration_ms) == ({"a": [1]}, True, 1.5)
    assert ExecResult.of(pb.ExecutionResult()).value is None
    assert ExecResult.of(pb.ExecutionResult(value_json="not json")).value == "not json"
    assert not ExecResult.of(pb.ExecutionResult(error="ValueError: x", exit_code=1)).ok
    info = InstanceInfo.of(pb.Instance(instance_id="i-1@b", status=pb.STOPPED), "morph")
    assert (info.id, info.provider, info.running, info.created_at) == ("i-1@b", "morph", False, None)
    assert isinstance(event_of(host_pb.InvokeEvent(call=host_pb.ProviderCall(provider_id="m"))), ProviderCall)
    assert event_of(host_pb.InvokeEvent(log="[info] x")) == LogLine("[info] x")
    assert event_of(host_pb.InvokeEvent(result_json="{}")) is None


def test_a_branch_that_made_fewer_instances_is_the_kind_of_its_first_failure() -> None:
    made = pb.BranchReply(instances=[pb.Instance(instance_id="i-1")])
    assert branch_failure(made, 1) is None
    failed = branch_failure(pb.BranchReply(instances=[pb.Instance(instance_id="i-1")], errors=[
        pb.BranchError(index=1, code="RESOURCE_EXHAUSTED", message="no memory")]), 2)
    assert isinstance(failed, ResourceExhausted) and "branch 1: RESOURCE_EXHAUSTED: no memory" in failed.message
    odd = branch_failure(pb.BranchReply(errors=[pb.BranchError(index=0, code="UNAVAILABLE", message="x")]), 1)
    assert isinstance(odd, Unavailable)
    assert branch_failure(pb.BranchReply(), 2) is not None
