"""Long calls never take the host's health or other tenants with them (issue 18, findings 9 and 11).

Each test runs the attack against a real ``worldrt host serve`` and its real provider daemons: 45 long
execs (on one instance and across instances), 16 spinning components, a host that stops answering, a
component that logs in a loop. Health must answer within a bound throughout, another instance's call
must be served, the excess must be refused in a sentence naming what is busy and the limit, the CLI must
say "busy" rather than fall back to an embedded host, and the host's log must grow by at most the cap.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support import FIXTURES, HostProcess, cli, wait_for
from worldrt.providers import open_channel
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons

WAT = FIXTURES.parent / "wat"
SERVING = health_pb2.HealthCheckResponse.SERVING
HEALTH_BOUND_S = 5.0
SLEEP = "import time\ntime.sleep(30)\n'woke'"


def health_within(host: HostProcess, bound_s: float = HEALTH_BOUND_S) -> int:
    """The host's health, asked on a fresh channel with a deadline of ``bound_s``."""
    with open_channel(host.address) as channel:
        status: int = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                                 timeout=bound_s).status
        return status


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """(status code name, details) of a call: ("OK", "") when it succeeds."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


class Calls:
    """Calls started on threads, each one's outcome kept."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=64)
        self.futures: list[Any] = []

    def start(self, call: Callable[[], Any]) -> None:
        self.futures.append(self.pool.submit(outcome, call))

    def done(self) -> list[tuple[str, str]]:
        return [f.result() for f in self.futures if f.done()]

    def finish(self, timeout_s: float) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout_s
        results = [f.result(timeout=max(0.1, deadline - time.monotonic())) for f in self.futures]
        self.pool.shutdown()
        return results


@pytest.fixture()
def host(tmp_path: Path) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path)
    yield running
    running.stop()


def provider_call(host: HostProcess, timeout_s: float = 60, **operation: Any) -> host_pb.ProviderCallReply:
    return host.stub.CallProvider(host_pb.ProviderCallRequest(source="pools", **operation), timeout=timeout_s)


def test_45_long_execs_leave_health_and_other_instances_alone(host: HostProcess) -> None:
    host.stub.PutLink(pb.LinkConfig(source_component="pools", interfaces=["generator"], target_provider="morph"))
    busy, spread = [provider_call(host, start=pb.StartRequest()).instance.instance_id for _ in range(2)]
    others = [provider_call(host, start=pb.StartRequest()).instance.instance_id for _ in range(4)]
    quiet = provider_call(host, start=pb.StartRequest()).instance.instance_id
    calls = Calls()
    # 29 on one instance, 16 across four others: 45 long execs, each 30 s if it ran to its end.
    for i in range(45):
        target = busy if i < 29 else others[i % 4]
        calls.start(lambda target=target: provider_call(host, timeout_s=120, execute=pb.ExecuteRequest(
            instance_id=target, code=SLEEP)))
    # The excess on the one instance is refused at once, naming it and the limit per instance.
    refused = wait_for(lambda: [d for c, d in calls.done() if c == "RESOURCE_EXHAUSTED"] or None, 30,
                       "no call on the busy instance was refused")
    assert all(f"instance {busy} is busy" in d and "the limit per instance (8)" in d for d in refused), refused
    # Health answers SERVING within its bound; another instance is served; so is the CLI, through the host.
    assert health_within(host) == SERVING
    answer = provider_call(host, timeout_s=30, execute=pb.ExecuteRequest(instance_id=quiet, code="1 + 1"))
    assert answer.execution.value_json == "2"
    listed = cli(host.home, "providers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert health_within(host) == SERVING
    # Stopping the instances ends every call: none is left holding the host.
    for iid in (busy, *others):
        provider_call(host, stop=pb.InstanceRef(instance_id=iid))
    results = calls.finish(60)
    codes = [c for c, _ in results]
    assert codes.count("RESOURCE_EXHAUSTED") == 29 - 8, codes
    assert "OK" not in codes and "UNAVAILABLE" not in codes and "DEADLINE_EXCEEDED" not in codes, results
    provider_call(host, stop=pb.InstanceRef(instance_id=quiet))
    provider_call(host, stop=pb.InstanceRef(instance_id=spread))
    assert "Traceback" not in host.log()


def test_16_spinning_components_leave_health_and_provider_calls_alone(tmp_path: Path) -> None:
    host = HostProcess(tmp_path, env={"WORLDRT_MAX_COMPONENTS": "4", "WORLDRT_COMPONENT_TIMEOUT_S": "10"})
    try:
        host.stub.PutLink(pb.LinkConfig(source_component="pools", interfaces=["generator"],
                                        target_provider="morph"))
        quiet = provider_call(host, start=pb.StartRequest()).instance.instance_id
        loop = host.load(WAT / "loop.wat", "loop", provider="morph")
        calls = Calls()
        started = time.monotonic()
        for _ in range(16):
            calls.start(lambda: list(host.stub.Invoke(host_pb.InvokeRequest(component_id=loop), timeout=180)))
        refused = wait_for(lambda: [d for c, d in calls.done() if c == "RESOURCE_EXHAUSTED"] or None, 30,
                           "no invocation was refused")
        assert all("is busy: 4 component invocations running" in d and "--max-components 4" in d
                   for d in refused), refused
        # While four spin: health, a provider call and the CLI are served; the CLI's own invocation is "busy".
        assert health_within(host) == SERVING
        answer = provider_call(host, timeout_s=30, execute=pb.ExecuteRequest(instance_id=quiet, code="2 * 3"))
        assert answer.execution.value_json == "6"
        listed = cli(host.home, "providers", "list", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout)["providers"], listed.stderr
        run = cli(host.home, "component", "run", str(WAT / "loop.wat"), "--verse", "1")
        assert run.returncode == 9 and run.stderr.count("\n") == 1, run.stderr
        assert f"the host at {host.address} is busy: 4 component invocations running" in run.stderr
        assert "in use by" not in run.stderr
        assert health_within(host) == SERVING
        # The epoch deadline really ends each spinning component (10 s here, however busy the machine is; the
        # checks above take about 2 s with the suite running beside them).
        results = calls.finish(120)
        assert time.monotonic() - started < 90
        codes = [c for c, _ in results]
        assert codes.count("RESOURCE_EXHAUSTED") == 12 and codes.count("DEADLINE_EXCEEDED") == 4, results
        assert all("ran past its deadline of 10 s" in d for c, d in results if c == "DEADLINE_EXCEEDED"), results
        provider_call(host, stop=pb.InstanceRef(instance_id=quiet))
        assert "Traceback" not in host.log()
    finally:
        host.stop()


def test_a_host_that_does_not_answer_is_reported_busy_never_replaced(host: HostProcess) -> None:
    assert cli(host.home, "providers", "list").returncode == 0
    os.kill(host.proc.pid, signal.SIGSTOP)
    try:
        out = cli(host.home, "providers", "list")
    finally:
        os.kill(host.proc.pid, signal.SIGCONT)
    assert out.returncode == 69 and out.stderr.count("\n") == 1, out.stderr
    assert f"the host at unix:{host.home / 'host.sock'} is busy" in out.stderr, out.stderr
    assert "in use by" not in out.stderr and "Traceback" not in out.stderr
    wait_for(lambda: health_within(host) == SERVING, 30, "the host did not answer again")
    assert cli(host.home, "providers", "list").returncode == 0


def test_a_component_logging_in_a_loop_grows_the_hosts_log_by_at_most_its_cap(host: HostProcess) -> None:
    flood = host.load(WAT / "log_flood.wat", "log_flood", provider="morph")
    message = "flood\x1b[2J\n" + "x" * 1000  # control characters too: they must not reach the log as such
    before = host.log_path.stat().st_size
    events = list(host.stub.Invoke(host_pb.InvokeRequest(component_id=flood, verse_id=20_000, args=message),
                                   timeout=300))
    assert events[-1].outcome.ok and events[-1].outcome.value == message
    logged = [e.log for e in events if e.HasField("log")]
    dropped = [line for line in logged if "dropped" in line]
    assert len(dropped) == 1 and "past the cap of 1000 lines and 262144 bytes per invocation" in dropped[0]
    assert len(logged) <= 1001
    log = host.log()
    grown = host.log_path.stat().st_size - before
    # 256 KiB of messages, and a prefix of ~80 bytes on each of at most 1000 lines.
    assert grown <= 256 * 1024 + 1000 * 120, grown
    notes = [line for line in log.splitlines() if "log_flood: dropped" in line]
    assert len(notes) == 1, notes
    dropped_lines = int(notes[0].split("log_flood: dropped ", 1)[1].split()[0])
    assert dropped_lines >= 20_000 - 1000
    assert "\x1b" not in log and "log_flood: flood?[2J?xxx" in log
    assert health_within(host) == SERVING


def test_host_serve_takes_its_limits_as_flags(tmp_path: Path) -> None:
    host = HostProcess(tmp_path, "--max-components", "2", "--component-timeout", "5", "--max-calls", "3")
    try:
        loop = host.load(WAT / "loop.wat", "loop", provider="morph")
        calls = Calls()
        for _ in range(3):
            calls.start(lambda: list(host.stub.Invoke(host_pb.InvokeRequest(component_id=loop), timeout=120)))
        results = calls.finish(60)
        assert sorted(c for c, _ in results) == ["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"]
        assert "--max-components 2" in next(d for c, d in results if c == "RESOURCE_EXHAUSTED")
        assert "deadline of 5 s" in next(d for c, d in results if c == "DEADLINE_EXCEEDED")
        assert "(2 component invocations, 3 other calls, 8 quick ones and 8 per instance at once)" in host.log()
        bad = cli(tmp_path, "host", "serve", "--max-components", "0", "--listen", f"unix:{tmp_path / 'b.sock'}")
        assert bad.returncode == 2 and "--max-components must be 1 or more, got 0" in bad.stderr, bad.stderr
    finally:
        host.stop()


def test_calls_past_the_hosts_limit_are_refused_not_queued(tmp_path: Path) -> None:
    host = HostProcess(tmp_path, "--max-calls", "2")
    try:
        host.stub.PutLink(pb.LinkConfig(source_component="pools", interfaces=["generator"],
                                        target_provider="morph"))
        ids = [provider_call(host, start=pb.StartRequest()).instance.instance_id for _ in range(3)]
        calls = Calls()
        gate = threading.Barrier(3)
        for iid in ids:
            def long(iid: str = iid) -> Any:
                gate.wait(30)
                return provider_call(host, timeout_s=120, execute=pb.ExecuteRequest(instance_id=iid, code=SLEEP))
            calls.start(long)
        refused = wait_for(lambda: [d for c, d in calls.done() if c == "RESOURCE_EXHAUSTED"] or None, 30,
                           "no call past the limit was refused")
        assert refused == [f"the host at {host.address} is busy: 2 calls running, its limit (host serve --max-calls "
                           f"2); try again when some end"]
        assert health_within(host) == SERVING
        # Quick calls have places of their own: the host at its limit still lists and stops.
        assert host.stub.ListLinks(host_pb.ListLinksRequest(), timeout=10).links
        for iid in ids:
            provider_call(host, timeout_s=30, stop=pb.InstanceRef(instance_id=iid))
        assert sorted(c for c, _ in calls.finish(60)) == ["ABORTED", "ABORTED", "RESOURCE_EXHAUSTED"]
    finally:
        host.stop()
