"""Components run by the host: calls routed over links to supervised daemons and recorded in DuckDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.support import built_example, cli, f32
from worldrt.host import OUTPUT_EVENT_CAP, Host
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons

WAT = Path(__file__).resolve().parents[2] / "fixtures" / "wat"


@pytest.fixture(scope="module")
def caller_wasm() -> Path:
    return built_example("caller")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, caller_wasm: Path) -> Iterator[Host]:
    """One host for the module (compiling the component once); each test puts the links it relies on."""
    home = tmp_path_factory.mktemp("host")
    with Host(home / "world.duckdb", home) as embedded:
        embedded.load_component(host_pb.LoadComponentRequest(path=str(caller_wasm)))
        yield embedded


def _link(host: Host, interface: str, provider: str) -> None:
    host.put_link(pb.LinkConfig(source_component="caller", interfaces=[interface], target_provider=provider))


def _morph_instance(host: Host) -> str:
    stub = host.own.stub("morph")
    return stub.Start(pb.StartRequest(), metadata=(("authorization", f"Bearer {host.supervisor.token}"),)).instance_id


def _invoke(host: Host, wasm: Path, verse: int, **spec: object) -> host_pb.InvokeOutcome:
    info = host.load_component(host_pb.LoadComponentRequest(path=str(wasm)))
    return host.invoke(host_pb.InvokeRequest(component_id=info.component_id, verse_id=verse, args=json.dumps(spec)))


def test_every_call_is_a_row_with_latency_and_cost(host: Host, caller_wasm: Path) -> None:
    _link(host, "generator", "morph")
    iid = _morph_instance(host)
    events: list[host_pb.InvokeEvent] = []
    info = host.load_component(host_pb.LoadComponentRequest(path=str(caller_wasm)))
    outcome = host.invoke(host_pb.InvokeRequest(component_id=info.component_id, verse_id=77,
                                                args=json.dumps({"instance_id": iid, "calls": 5})), events.append)
    assert outcome.ok and json.loads(outcome.value) == {"calls": 5} and outcome.provider_calls == 5
    assert [e.call.operation for e in events] == ["execute"] * 5
    rows = host.recent_invocations(host_pb.RecentInvocationsRequest(verse_id="77", limit=50)).invocations
    assert len(rows) == 5
    for row in rows:
        assert (row.provider_id, row.operation) == ("morph", "execute")
        assert row.latency_ms > 0 and row.cost_units > 0
        assert json.loads(row.input_params)["instance_id"] == iid
        assert json.loads(row.output_result)["value_json"] == "1"


def test_a_missing_link_names_the_interface_and_the_command(host: Host, caller_wasm: Path) -> None:
    outcome = _invoke(host, caller_wasm, 1, op="optimize")
    assert not outcome.ok
    assert "interface 'coordinator'" in outcome.value and "worldrt link put coordinator=PROVIDER" in outcome.value
    _link(host, "coordinator", "primeintellect")
    linked = _invoke(host, caller_wasm, 1, op="optimize")
    assert linked.ok, linked.value
    assert json.loads(linked.value)["best"] == {"x": 2}
    host.delete_link(pb.LinkConfig(link_id="caller/coordinator/default"))
    assert "no link for interface 'coordinator'" in _invoke(host, caller_wasm, 1, op="optimize").value


def test_a_link_changed_mid_run_applies_to_the_next_call(host: Host, caller_wasm: Path) -> None:
    iid = _morph_instance(host)
    _link(host, "generator", "morph")
    host.supervisor.ensure("modal")
    info = host.load_component(host_pb.LoadComponentRequest(path=str(caller_wasm)))
    timer = threading.Timer(1.0, lambda: host.put_link(pb.LinkConfig(
        source_component="caller", interfaces=["generator"], target_provider="modal")))
    timer.start()
    spec = {"instance_id": iid, "code": "import time; time.sleep(0.05)", "calls": 400}
    outcome = host.invoke(host_pb.InvokeRequest(component_id=info.component_id, verse_id=5, args=json.dumps(spec)))
    timer.join()
    # The calls after the switch went to modal, which has no such instance.
    assert not outcome.ok and outcome.value.startswith("NOT_FOUND") and "on modal" in outcome.value
    _link(host, "generator", "morph")
    host.registry.flush()
    by_provider = {r["provider_id"]: r["calls"] for r in host.registry.query(
        "SELECT provider_id, count(*) AS calls FROM provider_invocations WHERE verse_id = '5' GROUP BY 1")}
    assert by_provider.get("modal") == 1 and by_provider.get("morph", 0) >= 5, by_provider


def test_a_provider_killed_mid_call_is_unavailable_to_the_guest_and_restarted(host: Host, caller_wasm: Path) -> None:
    _link(host, "generator", "morph")
    iid = _morph_instance(host)
    pid = host.supervisor.child("morph").proc.pid  # type: ignore[union-attr]
    restarts = next(p for p in host.list_providers(host_pb.ListProvidersRequest()).providers if p.provider_id == "morph").restarts
    threading.Timer(0.7, lambda: os.kill(pid, signal.SIGKILL)).start()
    outcome = _invoke(host, caller_wasm, 9, instance_id=iid, code="import time; time.sleep(5)", calls=1)
    assert not outcome.ok and outcome.value.startswith("UNAVAILABLE"), outcome.value
    deadline = time.monotonic() + 20
    state = None
    while time.monotonic() < deadline:
        state = next(p for p in host.list_providers(host_pb.ListProvidersRequest()).providers if p.provider_id == "morph")
        if state.status == "available" and state.pid != pid:
            break
        time.sleep(0.1)
    assert state is not None and host.provider_healthy("morph")
    assert state.restarts == restarts + 1 and state.pid != pid and state.status == "available"
    again = _invoke(host, caller_wasm, 9, instance_id=_morph_instance(host), calls=2)
    assert again.ok, again.value


def test_component_run_on_the_command_line(tmp_path: Path, caller_wasm: Path) -> None:
    env = {**os.environ, "WORLDRT_STATE_DIR": str(tmp_path)}
    base = [sys.executable, "-m", "worldrt.host.cli"]
    out = subprocess.run([*base, "component", "run", str(caller_wasm), "--verse", "1069", "--json",
                          "--link", "coordinator=primeintellect", "--args", '{"op": "optimize"}'],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] and data["value"]["best"] == {"x": 2}
    assert [c["provider_id"] for c in data["calls"]] == ["primeintellect"]
    con = duckdb.connect(str(tmp_path / "world.duckdb"), read_only=True)
    assert con.execute("SELECT provider_id, operation, verse_id FROM provider_invocations").fetchall() == [
        ("primeintellect", "optimize", "1069")]
    con.close()
    bad = subprocess.run([*base, "component", "run", str(tmp_path / "world.duckdb"), "--verse", "1"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    inspect = subprocess.run([*base, "component", "inspect", str(caller_wasm), "--json"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert inspect.returncode == 0, inspect.stderr
    assert "run" in json.loads(inspect.stdout)["exports"]


def test_a_call_that_waits_for_its_provider_to_start_records_the_wait(tmp_path: Path, caller_wasm: Path) -> None:
    """The second command finds its link in the registry and morph not running: its first call starts it."""
    args = ["component", "run", str(caller_wasm), "--verse", "4242", "--json", "--args",
            json.dumps({"instance_id": "new", "calls": 1})]
    first = cli(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    second = cli(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    calls = json.loads(second.stdout)["calls"]
    assert [c["operation"] for c in calls] == ["start", "execute", "stop"]
    start = calls[0]
    assert start["latency_ms"] >= start["startup_ms"] > 10, start
    assert all(c.get("startup_ms", 0.0) < start["startup_ms"] for c in calls[1:])
    con = duckdb.connect(str(tmp_path / "world.duckdb"), read_only=True)
    rows = con.execute("SELECT latency_ms, startup_ms FROM provider_invocations WHERE operation = 'start' "
                       "ORDER BY invoked_at").fetchall()
    con.close()
    assert len(rows) == 2 and rows[1] == (f32(start["latency_ms"]), f32(start["startup_ms"]))


def test_component_output_reaches_the_caller_as_events_up_to_a_cap(host: Host) -> None:
    assert host.output_event_cap == OUTPUT_EVENT_CAP == 1 << 20
    printing = host.load_component(host_pb.LoadComponentRequest(path=str(WAT / "print.wat")))
    events: list[host_pb.InvokeEvent] = []
    host.output_event_cap = 1000  # print.wat has one page of memory for its args
    try:
        outcome = host.invoke(host_pb.InvokeRequest(component_id=printing.component_id, verse_id=1, args="x" * 1500),
                              events.append)
    finally:
        host.output_event_cap = OUTPUT_EVENT_CAP
    assert outcome.ok and outcome.value == "printed"
    for stream in ("stdout", "stderr"):
        data = b"".join(e.output.data for e in events if e.HasField("output") and e.output.stream == stream)
        assert data == b"x" * 1000 + f"\n[{stream} cut at 1000 bytes]\n".encode()
