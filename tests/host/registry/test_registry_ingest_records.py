"""``Registry.ingest`` on a real DuckDB file: a record that cannot be a row is a RecordError and nothing of its
batch is written (the lattice's consumer then writes the others without it); rows and runs keep the host
that wrote them; a registry whose file is gone is a RegistryError (try again), never a bad record."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support import wait_for
from worldrt.host.registry import RecordError, Registry, RegistryError, Row, parse_record
from worldrt.host.registry._redaction import Payload
from worldrt.v1 import pb

pytestmark = pytest.mark.pure


def _rows(tmp_path: Path, n: int) -> list[Row]:
    made: list[bytes] = []
    source = Registry.open(tmp_path / "source.duckdb")
    source.sink = lambda kind, ident, data: made.append(data)
    for i in range(n):
        source.record_call("modal", "execute", "5", pb.ExecuteRequest(code=f"print({i})"),
                           pb.ExecutionResult(stdout=f"{i}\n"), 1.0, 0.5, time.time())
    source.close()
    return [row for data in made if (row := parse_record(data)) is not None]


def _run(run_id: str, **change: object) -> bytes:
    values: list[object] = [run_id, "7", "inference", json.dumps(["morph", "primeintellect", "gensyn"]),
                            json.dumps([1, 0, -1]), 0, True, False, 1.0, 2.0, 1.0, 0.5, 12.0, "2026-01-01T00:00:00",
                            "ok", None]
    for index, value in change.items():
        values[int(index[1:])] = value
    return json.dumps(values).encode()


def test_a_record_that_cannot_be_a_row_fails_its_batch_alone_and_rows_keep_their_host(tmp_path: Path) -> None:
    rows = [row._replace(host_id="h1") for row in _rows(tmp_path, 3)]
    registry = Registry.open(tmp_path / "one.duckdb")
    try:
        poison = {
            "unknown provider": rows[0]._replace(invocation_id="p1", provider_id="nope"),
            "unknown message type": rows[0]._replace(invocation_id="p2",
                                                     input_params=Payload(b"pno.such.Message", b"\x08\x01")),
            "not JSON": rows[0]._replace(invocation_id="p3", output_result=Payload(b"j", b"{not json")),
            "a time out of range": rows[0]._replace(invocation_id="p4", invoked_at=1e300),
        }
        for what, bad in poison.items():
            with pytest.raises(RecordError):
                registry.ingest([*rows, bad])
            assert registry.query("SELECT count(*) AS n FROM provider_invocations")[0]["n"] == 0, what
        registry.ingest(rows[:1])
        registry.ingest(rows)  # one of them redelivered: skipped, the others written
        registry.ingest(rows)  # redelivered: skipped
        assert registry.query("SELECT host_id, count(*) AS n FROM provider_invocations GROUP BY host_id") == [
            {"host_id": "h1", "n": 3}]
        for bad_run in (b"{}", b"not json", _run("r", s13="not a time"), json.dumps([1] * 16).encode()):
            with pytest.raises(RecordError):
                registry.ingest((), [(_run("fine"), "h1"), (bad_run, "h1")])
        registry.ingest((), [(_run("fine"), "h1")])
        assert registry.query("SELECT run_id, host_id FROM pipeline_runs") == [{"run_id": "fine", "host_id": "h1"}]
    finally:
        registry.close()


def test_a_registry_whose_file_is_gone_cannot_write_which_is_no_bad_record(tmp_path: Path) -> None:
    rows = _rows(tmp_path, 1)
    registry = Registry.open(tmp_path / "one.duckdb")
    try:
        (tmp_path / "one.duckdb").unlink()
        wait_for(lambda: registry.problem, 10, "the registry noticing its file is gone")
        with pytest.raises(RegistryError):
            registry.ingest(rows)
    finally:
        registry.close()
