"""The lean OTLP encoder writes what the SDK's encoder writes, span for span, for every kind of span
worldrt makes, and leaves any other span to the SDK's encoder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from worldrt.telemetry._otlp import LeanSpanExporter

pytestmark = pytest.mark.pure

RESOURCE = Resource.create({"service.name": "worldrt-test"})
SCOPE = InstrumentationScope("worldrt")
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _span(n: int, **overrides: object) -> ReadableSpan:
    parent = SpanContext(0xABC, 0x100 + n, is_remote=bool(n % 2), trace_flags=SAMPLED)
    fields: dict[str, object] = {
        "name": f"span {n}", "context": SpanContext(0xABC, 0x200 + n, is_remote=False, trace_flags=SAMPLED),
        "parent": parent if n % 3 else None, "resource": RESOURCE, "instrumentation_scope": SCOPE,
        "attributes": {"rpc.method": "worldrt.v1.WorldRuntime/Execute", "rpc.grpc.status_code": n, "ok": n % 2 == 0,
                       "seconds": n / 7},
        "events": (), "links": (), "kind": list(SpanKind)[n % len(SpanKind)], "status": Status(StatusCode.UNSET),
        "start_time": 1_000 + n, "end_time": 2_000 + n}
    fields.update(overrides)
    return ReadableSpan(**fields)  # type: ignore[arg-type]


@pytest.fixture
def exporter() -> Iterator[LeanSpanExporter]:
    made = LeanSpanExporter(RESOURCE, SCOPE)
    yield made
    made.shutdown()


def test_worldrts_spans_encode_as_the_sdk_encodes_them(exporter: LeanSpanExporter) -> None:
    spans = [_span(n) for n in range(12)]
    spans.append(_span(20, status=Status(StatusCode.ERROR, "NOT_FOUND: no instance i-1"),
                       events=(Event("exception", {"exception.type": "KeyError", "exception.message": "x"}, 1_500),)))
    spans.append(_span(21, status=Status(StatusCode.OK), attributes={}))
    spans.append(_span(22, context=SpanContext(0xDEF, 0x9, is_remote=False, trace_flags=SAMPLED,
                                               trace_state=TraceState([("vendor", "v1"), ("other", "2")]))))
    for batch in (spans, spans[:1], spans[5:]):
        assert exporter._translate_data(batch) == encode_spans(batch)


@pytest.mark.parametrize("foreign", [
    {"resource": Resource.create({"service.name": "someone-else"})},
    {"instrumentation_scope": InstrumentationScope("another.library", "1.0")},
    {"attributes": {"http.route": ["a", "b"]}},
    {"attributes": {"too.big": 2**70, "fine": 1}},
    {"events": (Event("exception", {"exception.message": "no such file: b'\\xff' as \udcff"}, 1_500),)},
    {"links": (Link(SpanContext(0x1, 0x2, is_remote=True, trace_flags=SAMPLED)),)},
])
def test_a_batch_with_any_other_span_is_the_sdks_encoding(exporter: LeanSpanExporter, foreign: dict[str, object]) -> None:
    batch = [_span(1), _span(2, **foreign), _span(3)]
    assert exporter._translate_data(batch) == encode_spans(batch)


def test_worldrts_spans_take_the_lean_path(exporter: LeanSpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    from worldrt.telemetry import _otlp

    calls: list[int] = []

    def counted(spans: list[ReadableSpan]) -> object:
        calls.append(len(spans))
        return encode_spans(spans)

    monkeypatch.setattr(_otlp, "encode_spans", counted)
    for _ in range(3):
        exporter._translate_data([_span(n) for n in range(8)])
    assert calls == [1]  # the resource and scope, encoded once from one span; never a batch
