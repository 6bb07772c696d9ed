"""An incoming W3C ``traceparent`` is the parent of what a server does for the call: the host's gRPC service,
``api serve morph`` and ``api serve e2b`` (HTTP header) and ``api serve modal`` (gRPC metadata). One request is
one trace, the API's span the parent of the host's; a pipeline run is one span whose children are its stages.
All against a real OTLP receiver and real daemons."""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import empty_pb2
from modal_proto import api_pb2_grpc

from tests.support import HostProcess, MorphApiServer, built_example, wait_for
from tests.support.e2b_api import E2bApiServer
from tests.support.modal_api import ModalApiServer
from tests.support.otlp import OtlpReceiver, ReceivedSpan, chain
from worldrt.v1 import host_pb

pytestmark = pytest.mark.daemons
SERVER = 2


def traceparent() -> tuple[str, str, str]:
    """A fresh caller's context: (header value, its trace id, its span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def spans_of(receiver: OtlpReceiver, trace_id: str, enough: int, what: str) -> list[ReceivedSpan]:
    def found() -> list[ReceivedSpan] | None:
        spans = [s for s in receiver.spans if s.trace_id == trace_id]
        return spans if len(spans) >= enough else None

    return wait_for(found, 60, what)


def named(receiver: OtlpReceiver, trace_id: str, name: str) -> ReceivedSpan:
    return wait_for(lambda: next((s for s in receiver.spans if s.trace_id == trace_id and s.name == name), None), 60,
                    f"the span {name} of the trace {trace_id}")


@pytest.fixture
def traced_env(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's processes export their spans to the receiver (the servers copy os.environ)."""
    env = receiver.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    return env


def test_host_service_and_http_apis_continue_the_callers_trace(tmp_path: Path, receiver: OtlpReceiver,
                                                                traced_env: dict[str, str]) -> None:
    (tmp_path / "host").mkdir()
    host = HostProcess(tmp_path / "host", env=traced_env)
    morph = e2b = None
    try:
        # the host's gRPC service: its server span's parent is the caller's span
        header, trace_id, parent_id = traceparent()
        host.stub.ListLinks(host_pb.ListLinksRequest(), metadata=(
            ("traceparent", header),), timeout=30)
        served = spans_of(receiver, trace_id, 1, "the host's span of the traced call")
        assert [(s.service, s.name, s.kind, s.parent_id) for s in served] == [
            ("worldrt-host", "worldrt.v1.Host/ListLinks", SERVER, parent_id)]

        # api serve morph, on that host: the API's span continues the header; the host's are its children
        morph = MorphApiServer(host.home, host=host.address)
        auth = {"Authorization": f"Bearer {morph.key}"}
        snapshot = httpx.post(f"{morph.base_url}/snapshot", json={}, headers=auth, timeout=60).json()["id"]
        header, trace_id, parent_id = traceparent()
        reply = httpx.post(f"{morph.base_url}/instance", params={"snapshot_id": snapshot},
                           headers={**auth, "traceparent": header}, timeout=120)
        assert reply.status_code == 200, reply.text
        api = named(receiver, trace_id, "HTTP POST")
        assert (api.kind, api.parent_id) == (SERVER, parent_id)
        assert api.attributes["http.response.status_code"] == 200
        started = wait_for(lambda: next((s for s in receiver.spans if s.trace_id == trace_id and s.kind == SERVER
                                         and s.service == "worldrt-provider-morph"), None), 60, "the daemon's span")
        path = chain(receiver.spans, started)
        assert path[0] == api
        # API → host → daemon (FastAPI's own route span, where the version has one, sits under the API's)
        services = [s.service for s in path if s.kind == SERVER]
        assert sorted(set(services), key=services.index) == ["worldrt-api", "worldrt-host", "worldrt-provider-morph"]
        assert any(s.service == "worldrt-host" and s.name.startswith("worldrt.v1.Host/") for s in path)
        httpx.delete(f"{morph.base_url}/instance/{reply.json()['id']}", headers=auth, timeout=60)

        # api serve e2b, on that host: the same
        e2b = E2bApiServer(host.home, host=host.address)
        header, trace_id, parent_id = traceparent()
        reply = httpx.get(f"{e2b.url}/v2/sandboxes", headers={"X-API-Key": e2b.key, "traceparent": header},
                          timeout=60)
        assert reply.status_code == 200, reply.text
        api = named(receiver, trace_id, "HTTP GET")
        assert (api.service, api.kind, api.parent_id) == ("worldrt-api", SERVER, parent_id)
        assert all(chain(receiver.spans, s)[0] == api for s in receiver.spans if s.trace_id == trace_id)
    finally:
        for server in (morph, e2b):
            if server is not None:
                server.stop()
        host.stop()


def test_modal_api_continues_the_trace_in_grpc_metadata(tmp_path: Path, receiver: OtlpReceiver,
                                                        traced_env: dict[str, str]) -> None:
    server = ModalApiServer(tmp_path / "modal")
    try:
        header, trace_id, parent_id = traceparent()
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            api_pb2_grpc.ModalClientStub(channel).ClientHello(empty_pb2.Empty(), metadata=(
                ("x-modal-token-id", server.token[0]), ("x-modal-token-secret", server.token[1]),
                ("traceparent", header)), timeout=30)
        trace = spans_of(receiver, trace_id, 1, "the Modal API's span")
        assert [(s.service, s.name, s.kind, s.parent_id) for s in trace] == [
            ("worldrt-api", "modal.client.ModalClient/ClientHello", SERVER, parent_id)]
    finally:
        server.stop()


def test_a_pipeline_run_is_one_span_with_a_child_per_stage(tmp_path: Path, receiver: OtlpReceiver,
                                                           traced_env: dict[str, str]) -> None:
    (tmp_path / "host").mkdir()
    host = HostProcess(tmp_path / "host", env=traced_env)
    try:
        component = built_example("explorer")
        events = list(host.stub.RunVerse(host_pb.VerseRequest(
            verse_id=7, kind="pipeline", preset="branch", branches=1, component_path=str(component),
            allow_unbalanced=True), timeout=300))
        assert any(e.result_json for e in events), events[-1:]
        root = wait_for(lambda: next((s for s in receiver.spans if s.name == "verse pipeline"), None), 60,
                        "the pipeline run's span")
        named(receiver, root.trace_id, "pipeline.record")
        named(receiver, root.trace_id, "worldrt.v1.Host/RunVerse")
        trace = [s for s in receiver.spans if s.trace_id == root.trace_id]
        served = next(s for s in trace if s.name == "worldrt.v1.Host/RunVerse")
        assert served.parent_id == "" and root.parent_id == served.span_id
        stages = {s.name for s in trace if s.parent_id == root.span_id}
        assert {"pipeline.select", "pipeline.load", "pipeline.link", "pipeline.run", "pipeline.record"} <= stages
        run = next(s for s in trace if s.name == "pipeline.run")
        # every provider call is in the run's trace; the component's own are under its run
        calls = [s for s in trace if s.service == "worldrt-host" and s.kind == 3]
        assert calls and all(chain(trace, s)[:2] == [served, root] for s in calls)
        made = [s for s in calls if not s.name.endswith("/ReceiveLinkConfig")]
        assert made and all(run in chain(trace, s) for s in made)
    finally:
        host.stop()
