"""Telemetry against real receivers: one component run through a host is one trace in an OTLP receiver
(host → provider daemon → sandbox), the host's /metrics counts exactly the calls made, and a JSON log
line names the trace the receiver saw."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import HostProcess, built_example, wait_for
from tests.support.otlp import OtlpReceiver, chain
from worldrt.v1 import host_pb

pytestmark = pytest.mark.daemons

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CLIENT, SERVER, INTERNAL = 3, 2, 1


def json_lines(path: Path) -> list[dict[str, object]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def metrics_url(host: HostProcess) -> str:
    line = wait_for(lambda: next((d for d in json_lines(host.log_path) if str(d.get("message", "")).startswith(
        "metrics at ")), None), 30, "the host's log line that names its metrics listener")
    return str(line["message"]).removeprefix("metrics at ")


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)




def test_a_component_run_is_one_trace_counted_and_logged(tmp_path: Path, receiver: OtlpReceiver) -> None:
    host = HostProcess(tmp_path, "--metrics-listen", "127.0.0.1:0", "--log-format", "json",
                       env=receiver.env(WORLDRT_LOG="DEBUG"))
    try:
        url = metrics_url(host)
        component = host.load(built_example("caller"), "caller", provider="morph")
        before = scrape(url)
        events = list(host.stub.Invoke(host_pb.InvokeRequest(
            component_id=component, verse_id=31, args=json.dumps({"instance_id": "new", "calls": 2})), timeout=120))
        outcome = next(e.outcome for e in events if e.HasField("outcome"))
        assert outcome.ok, outcome.value
        made = Counter(e.call.operation for e in events if e.HasField("call"))
        assert made == {"start": 1, "execute": 2, "stop": 1}

        # metrics: the router's counters moved by exactly the calls made, the component's by one run
        after = scrape(url)
        for operation, count in made.items():
            moved = (value(after, "worldrt_provider_calls_total", provider="morph", operation=operation, code="OK")
                     - value(before, "worldrt_provider_calls_total", provider="morph", operation=operation, code="OK"))
            assert moved == count, (operation, moved, count)
            assert (value(after, "worldrt_provider_call_duration_seconds_count", provider="morph", operation=operation,
                          code="OK")
                    - value(before, "worldrt_provider_call_duration_seconds_count", provider="morph",
                            operation=operation, code="OK")) == count
        assert value(after, "worldrt_component_invocations_total", component="caller", outcome="ok") - value(
            before, "worldrt_component_invocations_total", component="caller", outcome="ok") == 1

        # traces: the run is one trace; each Execute goes host (component, router) → daemon → sandbox
        def complete() -> bool | None:
            # each process exports on its own: wait for the last span of each (the host's Invoke span ends
            # after the client has read the outcome)
            names = Counter(s.name for s in receiver.spans)
            return (names["sandbox.exec"] >= 2 and names["component caller.run"] >= 1 and
                    names["worldrt.v1.Host/Invoke"] >= 1 and names["worldrt.v1.WorldRuntime/Stop"] >= 2) or None

        wait_for(complete, 30, "the spans of both Executes, of the component run and of the calls at the receiver")
        spans = receiver.spans
        root = next(s for s in spans if s.name == "component caller.run")
        trace = [s for s in spans if s.trace_id == root.trace_id]
        # the client's call to the host is the trace's root; the run is its child
        served = next(s for s in trace if s.span_id == root.parent_id)
        assert (served.name, served.kind, served.parent_id) == ("worldrt.v1.Host/Invoke", SERVER, "")
        assert root.service == "worldrt-host"
        exec_spans = [s for s in trace if s.name == "sandbox.exec"]
        assert len(exec_spans) == 2
        for leaf in exec_spans:
            path = chain(trace, leaf)
            assert [(s.service, s.name, s.kind) for s in path] == [
                ("worldrt-host", "worldrt.v1.Host/Invoke", SERVER),
                ("worldrt-host", "component caller.run", INTERNAL),
                ("worldrt-host", "worldrt.v1.WorldRuntime/Execute", CLIENT),
                ("worldrt-provider-morph", "worldrt.v1.WorldRuntime/Execute", SERVER),
                ("worldrt-provider-morph", "sandbox.exec", INTERNAL)]
            client = path[2]
            assert client.attributes["worldrt.provider"] == "morph"
            assert client.attributes["worldrt.link"] == "default"
            assert client.attributes["rpc.grpc.status_code"] == 0
            assert "worldrt.startup_ms" in client.attributes
        router = Counter(s.attributes["worldrt.operation"] for s in trace if s.kind == CLIENT)
        assert router == made
        assert Counter(s.name for s in trace if s.kind == SERVER) == {
            "worldrt.v1.Host/Invoke": 1,
            "worldrt.v1.WorldRuntime/Start": 1, "worldrt.v1.WorldRuntime/Execute": 2, "worldrt.v1.WorldRuntime/Stop": 1}
        # the registry's writes are spans of their own (one per batch written, not one per call)
        wait_for(lambda: [s for s in receiver.spans if s.name == "registry.write" and s.service == "worldrt-host"], 30,
                 "a span of the registry's batch writer")

        # logs: the host's JSON line about the run carries the trace id the receiver saw
        line = wait_for(lambda: next((d for d in json_lines(host.log_path)
                                      if str(d.get("message", "")).startswith("component caller.run")), None),
                        30, "the host's log line about the run")
        assert line["trace_id"] == root.trace_id and line["span_id"] == root.span_id
    finally:
        host.stop()
