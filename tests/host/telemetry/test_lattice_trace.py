"""A trace crosses the lattice: a component on host a whose morph lives on host b is one trace, from a's
component span and router span through b's bridge (context in NATS headers) to b's morph daemon and
its sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.host.lattice.loopback import LoopbackLattice
from tests.support import built_example, wait_for
from tests.support.otlp import OtlpReceiver, ReceivedSpan, chain
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons
CLIENT, SERVER, INTERNAL = 3, 2, 1


def test_a_component_run_across_the_lattice_is_one_trace(tmp_path: Path, receiver: OtlpReceiver,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    wasm = built_example("caller")
    for key, value in receiver.env().items():
        monkeypatch.setenv(key, value)
    lattice = LoopbackLattice(tmp_path)
    try:
        lattice.registry(tmp_path / "registry")
        lattice.host(tmp_path / "b", "b", "morph")
        a = lattice.host(tmp_path / "a", "a")
        a.stub.PutLink(pb.LinkConfig(source_component="caller", interfaces=["generator"], target_provider="morph"),
                       timeout=60)
        component = a.stub.LoadComponent(host_pb.LoadComponentRequest(path=str(wasm)), timeout=120).component_id

        def run() -> host_pb.InvokeOutcome | None:
            events = list(a.stub.Invoke(host_pb.InvokeRequest(component_id=component, verse_id=41, args=json.dumps(
                {"instance_id": "new", "calls": 1})), timeout=120))
            outcome = next(e.outcome for e in events if e.HasField("outcome"))
            return outcome if outcome.ok else None

        wait_for(run, 90, "a run of the component on a, its morph on b (once b's replica joined)")

        def exec_span() -> ReceivedSpan | None:
            spans = receiver.spans
            for leaf in (s for s in spans if s.name == "sandbox.exec"):
                path = chain(spans, leaf)
                if len(path) > 1 and path[1].name == "component caller.run":
                    return leaf
            return None

        leaf = wait_for(exec_span, 30, "the run's sandbox.exec span, parented up to its component span")
        path = chain(receiver.spans, leaf)
        assert [(s.service, s.name, s.kind) for s in path] == [
            ("worldrt-host", "worldrt.v1.Host/Invoke", SERVER),  # the client's call to host a
            ("worldrt-host", "component caller.run", INTERNAL),
            ("worldrt-host", "worldrt.v1.WorldRuntime/Execute", CLIENT),
            ("worldrt-host", "lattice morph.Execute", SERVER),
            ("worldrt-provider-morph", "worldrt.v1.WorldRuntime/Execute", SERVER),
            ("worldrt-provider-morph", "sandbox.exec", INTERNAL)]
        assert len({s.trace_id for s in path}) == 1
        assert path[2].attributes["worldrt.replica"] == "b"
        assert path[3].attributes["worldrt.replica"] == "b"
        assert path[3].attributes["rpc.grpc.status_code"] == 0
    finally:
        lattice.close()
