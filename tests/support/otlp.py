"""A real OTLP trace receiver for tests: a gRPC server of the OpenTelemetry collector's TraceService
(``opentelemetry.proto.collector.trace.v1``) that keeps every span exported to it."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    status: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any] = field(hash=False)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Listens on 127.0.0.1 (``endpoint``) until ``stop``; ``spans`` is what it received so far."""

    def __init__(self, *, keep: bool = True) -> None:
        """``keep=False`` only counts the spans (``count``): a benchmark's stand-in for a collector on
        another machine, costing this one no more than parsing each request."""
        self._keep = keep
        self.count = 0
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def Export(self, request: Any, context: Any) -> Any:
        if not self._keep:
            with self._lock:
                self.count += sum(len(scope.spans) for spans in request.resource_spans for scope in spans.scope_spans)
            return trace_service_pb2.ExportTraceServiceResponse()
        received = []
        for resource_spans in request.resource_spans:
            service = next((_value(a.value) for a in resource_spans.resource.attributes if a.key == "service.name"), "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(ReceivedSpan(
                        str(service), span.name, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
                        span.kind, span.status.code, {a.key: _value(a.value) for a in span.attributes}))
        with self._lock:
            self._spans.extend(received)
            self.count += len(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def env(self, **extra: str) -> dict[str, str]:
        """The standard variables that send a process's traces here, exported every 50 ms."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "50", **extra}

    def stop(self) -> None:
        self._server.stop(grace=None)


def chain(spans: list[ReceivedSpan], leaf: ReceivedSpan) -> list[ReceivedSpan]:
    """``leaf`` and its ancestors among ``spans``, root first."""
    by_id = {s.span_id: s for s in spans}
    path = [leaf]
    while path[-1].parent_id and path[-1].parent_id in by_id:
        path.append(by_id[path[-1].parent_id])
    return path[::-1]
