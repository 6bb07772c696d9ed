"""The registry keeps every row the host reports, says when it cannot, and keeps no secret.

Each test runs a real ``worldrt host serve`` and a component whose provider calls stream back as
``call`` events, then reads the DuckDB file itself.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.support import (
    HostProcess,
    built_example,
    cli,
    f32,
    invocation_rows,
    missing_rows,
    wait_for,
)
from worldrt.host.registry import (
    Invocation,
    Redactor,
    Registry,
    RegistryError,
    Row,
    read_rows,
)
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def caller_wasm() -> Path:
    return built_example("caller")


def _burst(host: HostProcess, component_id: str, verse: int, calls: int, **spec: object) -> Iterator[host_pb.InvokeEvent]:
    """Invoke the caller component: ``calls`` one-shot Executes on its generator (modal), or with
    ``instance_id="new"`` Executes in one instance it starts (a burst as fast as the calls can go)."""
    args = json.dumps({"instance_id": "", "calls": calls, **spec})
    return host.stub.Invoke(host_pb.InvokeRequest(component_id=component_id, verse_id=verse, args=args))


def _assert_each_event_has_its_row(latencies: list[float], rows: list[tuple[str, float]]) -> None:
    missing = missing_rows(latencies, rows)
    assert not missing, f"{missing} call(s) the client saw have no row"


def test_sigkill_mid_burst_keeps_the_row_of_every_call_the_client_saw(tmp_path: Path, caller_wasm: Path) -> None:
    host = HostProcess(tmp_path)
    latencies: list[float] = []
    try:
        component = host.load(caller_wasm, "caller")
        try:
            for event in _burst(host, component, 707, 3000, instance_id="new"):
                if event.HasField("call"):
                    assert not event.call.error, event.call.error
                    latencies.append(event.call.latency_ms)
                    if len(latencies) == 300:
                        host.proc.kill()
                    # After the kill, read on: the events the host sent before it died are still in flight.
        except grpc.RpcError:
            assert len(latencies) >= 300, "the invocation failed before the host was killed"
    finally:
        host.kill()
    assert len(latencies) >= 300
    Registry.open(tmp_path / "world.duckdb").close()  # replays the journal the killed host left
    rows = invocation_rows(tmp_path / "world.duckdb", 707)
    _assert_each_event_has_its_row(latencies, rows)
    # Calls are one after another: at most the call whose event the host had not sent yet adds a row.
    assert len(latencies) <= len(rows) <= len(latencies) + 1, (len(latencies), len(rows))
    assert len({ident for ident, _ in rows}) == len(rows)
    assert not (tmp_path / "world.duckdb.journal").stat().st_size
    Registry.open(tmp_path / "world.duckdb").close()
    assert len(invocation_rows(tmp_path / "world.duckdb", 707)) == len(rows), "a second open must not add rows again"


def test_a_deleted_journal_is_written_again_before_a_sigkill_can_cost_a_row(tmp_path: Path,
                                                                             caller_wasm: Path) -> None:
    journal = tmp_path / "world.duckdb.journal"
    host = HostProcess(tmp_path)
    latencies: list[float] = []
    try:
        component = host.load(caller_wasm, "caller")
        try:
            for event in _burst(host, component, 606, 3000, instance_id="new"):
                if event.HasField("call"):
                    latencies.append(event.call.latency_ms)
                    if len(latencies) == 50:
                        journal.unlink()
                    elif len(latencies) == 100:
                        wait_for(journal.exists, 10, "the journal was not made again")
                    elif len(latencies) == 200:
                        host.proc.kill()
        except grpc.RpcError:
            assert len(latencies) >= 200, "the invocation failed before the host was killed"
    finally:
        host.kill()
    made_again = stat.S_IMODE(journal.stat().st_mode)
    Registry.open(tmp_path / "world.duckdb").close()
    rows = invocation_rows(tmp_path / "world.duckdb", 606)
    _assert_each_event_has_its_row(latencies, rows)
    assert len(latencies) <= len(rows) <= len(latencies) + 1, (len(latencies), len(rows))
    assert made_again == 0o600


def test_a_deleted_registry_file_is_noticed_and_its_rows_kept_for_the_next_start(tmp_path: Path,
                                                                                 caller_wasm: Path) -> None:
    db = tmp_path / "world.duckdb"
    host = HostProcess(tmp_path)
    after: list[float] = []
    try:
        component = host.load(caller_wasm, "caller")
        seen = 0
        for event in _burst(host, component, 808, 80):
            if event.HasField("call"):
                seen += 1
                if seen == 20:
                    db.unlink()
                elif seen > 20:
                    after.append(event.call.latency_ms)
            elif event.HasField("outcome"):
                assert event.outcome.ok, event.outcome.value
        wait_for(lambda: host.health() == NOT_SERVING, 10, "the host did not report NOT_SERVING")
        out = cli(tmp_path, "providers", "list")
        assert out.returncode == 69 and out.stderr.count("\n") == 1, out.stderr
        assert f"the registry file {db} was deleted while the host ran" in out.stderr
        assert "restart the host" in out.stderr
        assert host.stop() == 0
    finally:
        host.kill()
    assert len(after) == 60
    again = HostProcess(tmp_path)
    try:
        assert again.health() == SERVING
    finally:
        assert again.stop() == 0
    rows = invocation_rows(db, 808)
    _assert_each_event_has_its_row(after, rows)
    assert len(rows) <= 80


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, so the registry's disk can really fill up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28, exc
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_makes_the_host_unhealthy_until_its_rows_are_written(tmp_path: Path, small_disk: Path,
                                                                          caller_wasm: Path) -> None:
    db = small_disk / "world.duckdb"
    host = HostProcess(tmp_path, "--db", str(db))
    try:
        component = host.load(caller_wasm, "caller")
        filler = _fill(small_disk)
        latencies = [e.call.latency_ms for e in _burst(host, component, 909, 10) if e.HasField("call")]
        assert len(latencies) == 10
        wait_for(lambda: host.health() == NOT_SERVING, 15, "the host did not report NOT_SERVING")
        out = cli(tmp_path, "providers", "list")
        assert out.returncode == 69 and out.stderr.count("\n") == 1, out.stderr
        assert "registry is unhealthy" in out.stderr and "No space left on device" in out.stderr
        filler.unlink()
        wait_for(lambda: host.health() == SERVING, 20, "the host did not recover to SERVING")
        assert cli(tmp_path, "providers", "list").returncode == 0
        rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(verse_id="909", limit=100)).invocations
        assert sorted(f32(r.latency_ms) for r in rows) == sorted(f32(x) for x in latencies)
        assert host.stop() == 0
    finally:
        host.kill()
    assert len(invocation_rows(db, 909)) == 10


def test_stored_rows_keep_no_env_value_no_link_secret_and_capped_output(tmp_path: Path) -> None:
    wasm = built_example("caller")
    home = tmp_path / "state"
    secret, token, key = "sk-live-7f3a9c2b11", "tok-5e1d77aa", "sk-env-0b9c4d"
    (tmp_path / "secret").write_text(secret + "\n")
    host = HostProcess(home, cwd=tmp_path)
    try:
        put = cli(home, "link", "put", "generator=modal", "--source", "caller", "--set", f"token={token}",
                  "--set", "tier=gold", "--secret-file", f"api={tmp_path / 'secret'}")
        assert put.returncode == 0, put.stderr
        info = host.stub.LoadComponent(host_pb.LoadComponentRequest(path=str(wasm)))
        code = f"print('{secret}' * 2)\nprint('{token}')\nprint('x' * 100_000)"
        outcome = next(e.outcome for e in host.stub.Invoke(host_pb.InvokeRequest(
            component_id=info.component_id, verse_id=31, args=json.dumps(
                {"code": code, "env": {"API_KEY": key, "HOME": "/w"}, "calls": 3, "timeout_ms": 20_000})))
            if e.HasField("outcome"))
        assert outcome.ok, outcome.value
        rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(verse_id="31", limit=10)).invocations
        assert len(rows) == 3
        for row in rows:
            params, result = json.loads(row.input_params), json.loads(row.output_result)
            assert params["env"] == {"API_KEY": "<redacted>", "HOME": "<redacted>"}
            assert "<redacted>" in params["code"]
            assert len(result["stdout"].encode()) <= 4096 and result["stdout_bytes"] > 100_000
            assert "<redacted>" in result["stdout"]
            for text in (row.input_params, row.output_result):
                assert secret not in text and token not in text and key not in text
        listed = host.stub.ListLinks(host_pb.ListLinksRequest()).links[0]
        assert dict(listed.secrets) == {"api": "<redacted>"}
        assert dict(listed.values) == {"token": "<redacted>", "tier": "gold"}
        files = [home / n for n in ("world.duckdb", "world.duckdb.wal", "world.duckdb.lock", "world.duckdb.journal",
                                    "host.token")]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files if p.exists()}
        assert "world.duckdb.wal" in modes, "the test needs the .wal the host writes"
        assert modes == {p.name: 0o600 for p in files}, modes
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for path in files:
            data = path.read_bytes()
            assert secret.encode() not in data and token.encode() not in data and key.encode() not in data, path
        assert host.stop() == 0
    finally:
        host.kill()
    con = duckdb.connect(str(home / "world.duckdb"), read_only=True)
    try:
        leaked = con.execute("SELECT count(*) FROM provider_invocations WHERE input_params::VARCHAR LIKE ? "
                             "OR output_result::VARCHAR LIKE ? OR input_params::VARCHAR LIKE ? "
                             "OR output_result::VARCHAR LIKE ? OR input_params::VARCHAR LIKE ?",
                             [f"%{secret}%", f"%{secret}%", f"%{token}%", f"%{token}%", f"%{key}%"]).fetchone()
        config = json.loads(con.execute("SELECT link_config FROM provider_links").fetchone()[0])
    finally:
        con.close()
    assert leaked == (0,)
    assert config["value_keys"] == ["tier", "token"] and config["secret_keys"] == ["api"]
    assert secret not in json.dumps(config) and token not in json.dumps(config)


def test_keep_days_prunes_old_invocation_rows_at_start_and_then_periodically(tmp_path: Path) -> None:
    db = tmp_path / "world.duckdb"
    now = time.time()
    seeded = Registry.open(db)
    seeded.record(Invocation("morph", "execute", "old", {}, {}, 1.0, 0.0, now - 10 * 86400))
    seeded.record(Invocation("morph", "execute", "new", {}, {}, 1.0, 0.0, now - 86400))
    seeded.close()
    bad = cli(tmp_path, "host", "serve", "--keep-days", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "keep-days must be more than 0" in bad.stderr
    host = HostProcess(tmp_path, "--keep-days", "7")
    try:
        rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(limit=10)).invocations
        assert [r.verse_id for r in rows] == ["new"]
        assert host.stop() == 0
    finally:
        host.kill()
    running = Registry.open(tmp_path / "p.duckdb", keep_days=7, prune_every_s=0.2)
    try:
        running.record(Invocation("morph", "execute", "stale", {}, {}, 1.0, 0.0, now - 8 * 86400))
        running.record(Invocation("morph", "execute", "fresh", {}, {}, 1.0, 0.0, now))
        running.flush()

        def verses() -> list[str]:
            return [r["verse_id"] for r in running.query("SELECT verse_id FROM provider_invocations")]

        wait_for(lambda: verses() == ["fresh"], 10, "the stale row was not pruned")
    finally:
        running.close()


def _journal_record(ident: str, verse: str) -> bytes:
    payload = Redactor().payload(pb.ExecuteRequest(code="1"))
    return Row(ident, "morph", "execute", verse, payload, payload, 1.0, 0.0, time.time()).journal_record()


def test_the_journal_is_replayed_once_and_a_torn_record_skipped(tmp_path: Path) -> None:
    db = tmp_path / "world.duckdb"
    journal = tmp_path / "world.duckdb.journal"
    Registry.open(db).close()
    first, second, torn = "a" * 32, "b" * 32, "c" * 32
    journal.write_bytes(_journal_record(first, "j") + _journal_record(first, "j"))
    Registry.open(db).close()
    journal.write_bytes(_journal_record(first, "j") + b"garbage" + _journal_record(second, "j")
                        + _journal_record(torn, "j")[:-7])
    assert [r.invocation_id for r in read_rows(journal)] == [first, second]
    Registry.open(db).close()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT invocation_id, count(*) FROM provider_invocations GROUP BY 1 ORDER BY 1").fetchall() \
        == [(first, 1), (second, 1)]
    con.close()
    assert journal.stat().st_size == 0 and stat.S_IMODE(journal.stat().st_mode) == 0o600


def test_flush_of_an_unhealthy_registry_says_why(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path / "w.duckdb")
    try:
        (tmp_path / "w.duckdb").unlink()
        registry.record(Invocation("morph", "execute", "1", {}, {}, 1.0, 0.0, time.time()))
        with pytest.raises(RegistryError) as info:
            registry.flush()
        assert "was deleted while the host ran" in str(info.value) and "\n" not in str(info.value)
        assert registry.problem == str(info.value)
    finally:
        registry.close()
    assert [r.verse_id for r in read_rows(tmp_path / "w.duckdb.journal")] == ["1"]


def test_a_registry_and_a_journal_from_before_startup_ms_are_opened_and_the_column_added(tmp_path: Path) -> None:
    db = tmp_path / "world.duckdb"
    con = duckdb.connect(str(db))
    con.execute("""CREATE TABLE provider_invocations (invocation_id VARCHAR PRIMARY KEY, provider_id VARCHAR,
                   operation VARCHAR, verse_id VARCHAR, input_params JSON, output_result JSON, latency_ms FLOAT,
                   cost_units FLOAT, invoked_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""")
    con.execute("INSERT INTO provider_invocations (invocation_id, provider_id, operation, verse_id, latency_ms) "
                "VALUES ('from-before', 'morph', 'execute', 'old', 2.5)")
    con.close()
    # A journal record as the version before startup_ms wrote it: the body ends at the last payload.
    record = _journal_record("d" * 32, "journal")
    body = record[12:-8]
    (tmp_path / "world.duckdb.journal").write_bytes(struct.pack("<4sII", b"WJr1", len(body), zlib.crc32(body)) + body)
    registry = Registry.open(db)
    try:
        registry.record(Invocation("morph", "start", "new", {}, {}, 1300.0, 0.0, time.time(), startup_ms=1000.0))
        registry.flush()
        rows = registry.query("SELECT verse_id, latency_ms, startup_ms FROM provider_invocations ORDER BY verse_id")
    finally:
        registry.close()
    assert rows == [{"verse_id": "journal", "latency_ms": 1.0, "startup_ms": 0.0},
                    {"verse_id": "new", "latency_ms": 1300.0, "startup_ms": 1000.0},
                    {"verse_id": "old", "latency_ms": 2.5, "startup_ms": 0.0}]
