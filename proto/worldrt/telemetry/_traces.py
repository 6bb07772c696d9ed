"""Traces: OpenTelemetry spans for worldrt's calls, off unless asked for.

Tracing is on when ``start_tracing`` is called with ``flag=True`` (``--otel``) or the standard variables
ask for it (``OTEL_TRACES_EXPORTER`` other than ``none``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and ``OTEL_SDK_DISABLED`` is not ``true``. Only then is the
SDK imported and a batch exporter set up (``OTEL_SERVICE_NAME`` names the service; the exporter reads
its own ``OTEL_EXPORTER_OTLP_*`` variables). The choice is put back in the environment, so a daemon
this process starts traces as it does.

Invariants: while tracing is off every function here returns at once (``span`` gives one shared no-op
object; ``carrier`` an empty list): nothing is allocated, imported or exported. A span's status is its
gRPC code (``rpc.grpc.status_code``), ERROR with the error's sentence for any code but OK. Context
crosses processes only as W3C trace context (``traceparent``, ``tracestate``) in gRPC metadata or NATS
headers, never anything else the peer sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from worldrt.errors import WorldError

log = logging.getLogger("worldrt.telemetry")
GRPC_STATUS = "rpc.grpc.status_code"
TRACE_KEYS = ("traceparent", "tracestate")
Carrier = list[tuple[str, str]]
T = TypeVar("T")

# The SDK's tracer while tracing is on; None: tracing is off and every function here is a no-op.
_tracer: Any = None
_api: Any = None  # the opentelemetry API modules, imported when tracing starts


def wanted(flag: bool | None = None) -> bool:
    """Whether tracing is asked for, by ``flag`` (``--otel``) or the standard OTEL_* variables."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    if flag:
        return True
    return bool(exporters or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def tracing() -> bool:
    return _tracer is not None


class _Api:
    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace

        self.context, self.propagate, self.trace = context, propagate, trace
        self.kinds = {"server": trace.SpanKind.SERVER, "client": trace.SpanKind.CLIENT,
                      "internal": trace.SpanKind.INTERNAL, "producer": trace.SpanKind.PRODUCER,
                      "consumer": trace.SpanKind.CONSUMER}


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER names {name!r}; worldrt exports traces with otlp or console")
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "grpc":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def start_tracing(service: str, *, flag: bool | None = None) -> bool:
    """Turn tracing on for this process as ``service`` (unless OTEL_SERVICE_NAME names it) when it is
    asked for; whether it is on. Asked for but not installed: a warning that says what to install."""
    global _tracer, _api
    if _tracer is not None:
        return True
    if not wanted(flag):
        return False
    try:
        api = _Api()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        names = [n.strip() for n in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",") if n.strip()]
        exporters = [_exporter(name) for name in names]
    except ImportError as exc:
        log.warning("tracing is asked for, but %s is not installed: pip install 'world-runtime[otel]'", exc.name)
        return False
    except ValueError as exc:
        log.warning("tracing stays off: %s", exc)
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    api.trace.set_tracer_provider(provider)
    _api, _tracer = api, provider.get_tracer("worldrt")
    # Daemons this process starts inherit the choice.
    os.environ.setdefault("OTEL_TRACES_EXPORTER", ",".join(names))
    return True


def stop_tracing() -> None:
    """Export what is buffered and stop (a daemon's exit does this too)."""
    global _tracer
    if _tracer is None:
        return
    provider = _api.trace.get_tracer_provider()
    _tracer = None
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()


def _parent(carrier: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> Any:
    if carrier is None:
        return None
    pairs = carrier.items() if isinstance(carrier, Mapping) else carrier
    found = {k.lower(): v for k, v in pairs if isinstance(v, str) and k.lower() in TRACE_KEYS}
    return _api.propagate.extract(found) if found else None


class Span:
    """A span, or nothing while tracing is off (``NOOP``); also a context manager that makes it current
    and ends it, its status taken from the exception that ends the block."""

    __slots__ = ("_span", "_statused", "_token")

    def __init__(self, span: Any) -> None:
        self._span = span
        self._token: Any = None
        self._statused = False

    def set(self, key: str, value: str | float | bool) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def status(self, code: grpc.StatusCode, message: str = "") -> None:
        if self._span is None:
            return
        self._statused = True
        self._span.set_attribute(GRPC_STATUS, code.value[0])
        if code is not grpc.StatusCode.OK:
            self._span.set_status(_api.trace.Status(_api.trace.StatusCode.ERROR, message or code.name))

    def failed(self, exc: BaseException) -> None:
        if self._span is None:
            return
        if isinstance(exc, WorldError):
            self.status(exc.code, exc.message)
        elif isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
            self.status(exc.code(), str(getattr(exc, "details", lambda: "")() or ""))
        else:
            self._span.record_exception(exc)
            self.status(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")

    def carrier(self) -> Carrier:
        """This span's W3C trace context, as metadata pairs for the next hop."""
        if self._span is None:
            return []
        found: dict[str, str] = {}
        _api.propagate.inject(found, context=_api.trace.set_span_in_context(self._span))
        return list(found.items())

    def child(self, name: str, attributes: Mapping[str, str | int | float | bool] | None = None) -> Span:
        """A span under this one, whether or not this one is current."""
        if self._span is None or _tracer is None:
            return NOOP
        return Span(_tracer.start_span(name, context=_api.trace.set_span_in_context(self._span), attributes=attributes))

    def ids(self) -> tuple[str, str] | None:
        """(trace id, span id) in hex."""
        if self._span is None:
            return None
        ctx = self._span.get_span_context()
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    def end(self, error: BaseException | None = None) -> None:
        if self._span is None:
            return
        if error is not None:
            self.failed(error)
        self._span.end()

    def __enter__(self) -> Self:
        if self._span is not None:
            self._token = _api.context.attach(_api.trace.set_span_in_context(self._span))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._span is None:
            return
        if exc is not None and not self._statused and not isinstance(exc, GeneratorExit):
            self.failed(exc)
        self._span.end()
        if self._token is not None:
            _api.context.detach(self._token)
            self._token = None


NOOP = Span(None)


def span(name: str, attributes: Mapping[str, str | int | float | bool] | None = None, *, kind: str = "internal",
         parent: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None) -> Span:
    """A new span (started now; ``with`` makes it current and ends it, else call ``end``), child of the
    current span or of the W3C context in ``parent`` (gRPC metadata pairs or NATS headers)."""
    if _tracer is None:
        return NOOP
    context = _parent(parent)
    return Span(_tracer.start_span(name, context=context, kind=_api.kinds[kind], attributes=attributes))


def carrier() -> Carrier:
    """The current span's W3C trace context as metadata pairs (none while tracing is off)."""
    if _tracer is None:
        return []
    found: dict[str, str] = {}
    _api.propagate.inject(found)
    return list(found.items())


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, None when there is none."""
    if _tracer is None:
        return None
    ctx = _api.trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def without_trace(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``pairs`` less any W3C trace context (a hop that continues the trace puts its own)."""
    return [(k, v) for k, v in pairs if k.lower() not in TRACE_KEYS]


async def traced(events: AsyncIterator[T], name: str, attributes: Mapping[str, str | int | float | bool]) -> AsyncIterator[T]:
    """``events``, inside a span named ``name`` that lasts until the last of them (or the failure)."""
    with span(name, attributes):
        async for event in events:
            yield event
