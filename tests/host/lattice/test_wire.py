"""What travels on the lattice, without a lattice: ids stamped with their replica, the method table from
the contract's descriptor, link keys, forwarded metadata, the options' sentences, and the registry's
ingestion of other hosts' rows and runs (a real DuckDB file)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from worldrt.host.lattice import LatticeError, LatticeOptions
from worldrt.host.lattice._wire import (
    carries_ids,
    decode_metadata,
    encode_metadata,
    link_key,
    replicas_named,
    stamp_ids,
    strip_ids,
)
from worldrt.host.registry import Registry, Sink
from worldrt.host.routing import METHODS
from worldrt.v1 import pb

pytestmark = pytest.mark.pure


def test_every_rpc_of_the_contract_is_carried_with_its_shape() -> None:
    service = pb.DESCRIPTOR.services_by_name["WorldRuntime"]
    assert set(METHODS) == {m.name for m in service.methods}
    assert METHODS["ExecuteStream"].streaming and not METHODS["Execute"].streaming
    assert METHODS["Branch"].reply is pb.BranchReply
    assert carries_ids(pb.MergeRequest) and carries_ids(pb.BranchReply) and not carries_ids(pb.OptimizeRequest)


def test_ids_a_replica_returns_name_it_and_are_its_own_again_on_the_way_in() -> None:
    reply = pb.BranchReply(instances=[pb.Instance(instance_id="i1", snapshot_id="s1"), pb.Instance(instance_id="i2")])
    stamp_ids(reply, "b")
    assert [(i.instance_id, i.snapshot_id) for i in reply.instances] == [("i1@b", "s1@b"), ("i2@b", "")]
    merge = pb.MergeRequest(instance_ids=["i1@b", "i2@b"],
                            oracle=pb.OracleResult(rule="max", scores={"i1@b": 1.0, "i2@b": 2.0}, winner_id="i2@b"))
    assert replicas_named(merge) == {"b"}
    strip_ids(merge, "b")
    assert list(merge.instance_ids) == ["i1", "i2"] and dict(merge.oracle.scores) == {"i1": 1.0, "i2": 2.0}
    assert merge.oracle.winner_id == "i2"
    other = pb.ExecuteRequest(instance_id="x@c")
    strip_ids(other, "b")
    assert other.instance_id == "x@c"


def test_a_link_id_becomes_a_key_the_bucket_takes() -> None:
    assert link_key("*/generator/default") == "_2a_/generator/default"
    assert link_key("a_b/generator/x") != link_key("a*b/generator/x")


def test_only_the_calls_metadata_travels_never_the_bearer() -> None:
    text = encode_metadata([("x-worldrt-verse-id", "7"), ("authorization", "Bearer secret"),
                            ("x-worldrt-link-name", "fast")])
    assert "secret" not in text
    assert decode_metadata(text) == [("x-worldrt-verse-id", "7"), ("x-worldrt-link-name", "fast")]
    assert decode_metadata('[["authorization", "Bearer forged"]]') == [] and decode_metadata("not json") == []


def test_options_refuse_what_cannot_work_with_a_sentence() -> None:
    with pytest.raises(LatticeError, match="nats://HOST:PORT"):
        LatticeOptions("localhost")
    with pytest.raises(LatticeError, match="lattice name"):
        LatticeOptions("nats://127.0.0.1:4222", name="a.b")
    with pytest.raises(LatticeError, match="not both"):
        LatticeOptions("nats://127.0.0.1:4222", token="t", user="u")


def test_the_registry_ingests_other_hosts_rows_and_runs_once(tmp_path: Path) -> None:
    told: list[tuple[str, str, bytes]] = []
    sink: Sink = lambda kind, ident, data: told.append((kind, ident, data))  # noqa: E731
    source = Registry.open(tmp_path / "host.duckdb")
    source.sink = sink
    for i in range(3):
        source.record_call("modal", "execute", "9", pb.ExecuteRequest(code=f"print({i})"),
                           pb.ExecutionResult(stdout=f"{i}\n"), 1.5, 0.25, time.time())
    values = ["run-1", "9", "inference", json.dumps(["modal", "primeintellect", "ritual"]), json.dumps([1, 0, -1]),
              0, True, False, 1.0, 2.0, 1.0, 0.5, 12.0, time.time(), "ok", None]
    from datetime import UTC, datetime
    values[13] = datetime.now(UTC).replace(tzinfo=None)
    source.insert_run(values)
    source.close()
    assert [kind for kind, _, _ in told] == ["invocations"] * 3 + ["runs"]

    from worldrt.host.registry import parse_record
    rows = [row for kind, _, data in told if kind == "invocations" and (row := parse_record(data)) is not None]
    runs = [data for kind, _, data in told if kind == "runs"]
    target = Registry.open(tmp_path / "one.duckdb")
    try:
        target.ingest(rows, runs)
        target.ingest(rows + rows[:1], runs + runs)  # redelivered: nothing doubles
        stored = target.query("SELECT invocation_id, output_result FROM provider_invocations ORDER BY invocation_id")
        assert [r["invocation_id"] for r in stored] == sorted(ident for kind, ident, _ in told if kind == "invocations")
        assert json.loads(stored[0]["output_result"])["stdout"] in ("0\n", "1\n", "2\n")
        run = target.query("SELECT run_id, preset, balanced FROM pipeline_runs")
        assert run == [{"run_id": "run-1", "preset": "inference", "balanced": True}]
    finally:
        target.close()
    assert parse_record(b"garbage") is None and parse_record(told[0][2][:-1]) is None


def test_a_lattice_link_holds_no_secret_each_host_reads_its_own_file_of_its_key(tmp_path: Path) -> None:
    from worldrt.host.lattice import link_from_value
    from worldrt.host.lattice._member import link_value
    from worldrt.host.routing import HostLink, LinkError

    (tmp_path / "api-key").write_text("sk-very-secret\n")
    link = HostLink("caller/generator/default", "caller", ("generator",), "morph", values={"memory_mb": "256"})
    stored = link_value(link, {"api_key": "api-key"})
    assert b"sk-very-secret" not in stored and str(tmp_path).encode() not in stored
    back = link_from_value(stored, tmp_path)
    assert back.secrets == {"api_key": "sk-very-secret"} and back.values == {"memory_mb": "256"}
    (tmp_path / "api-key").unlink()
    assert link_from_value(stored, tmp_path).secrets == {}  # a host without the file hands the link on without it
    with pytest.raises(LinkError, match="--secret token=KEY"):
        link_value(HostLink("x", "*", ("generator",), "morph", values={"token": "t"}), {})
    with pytest.raises(LinkError, match="never a path"):
        link_value(link, {"api_key": "/etc/shadow"})
