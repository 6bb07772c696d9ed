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

import asyncio
import atexit
import logging
import os
import random
import re
import threading
import time
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
    """The OpenTelemetry pieces a span needs, bound once when tracing starts."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

        self.context, self.trace = context, trace
        self.Event, self.ReadableSpan, self.NonRecordingSpan, self.SpanContext = (
            Event, ReadableSpan, NonRecordingSpan, SpanContext)
        self.TraceState = TraceState
        self.flags = (TraceFlags(TraceFlags.DEFAULT), TraceFlags(TraceFlags.SAMPLED))
        self.scope = InstrumentationScope("worldrt")
        self.kinds = {"server": trace.SpanKind.SERVER, "client": trace.SpanKind.CLIENT,
                      "internal": trace.SpanKind.INTERNAL, "producer": trace.SpanKind.PRODUCER,
                      "consumer": trace.SpanKind.CONSUMER}
        self.unset = trace.Status(trace.StatusCode.UNSET)
        self.resource: Any = None
        self.sampler: Any = None
        self.always = False  # the sampler samples every root span (the default): no need to ask it
        self.processors: list[Any] = []
        self.provider: Any = None  # the TracerProvider made here, whether or not it is the process's


def _exporter(name: str, api: _Api) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER names {name!r}; worldrt exports traces with otlp or console")
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "grpc":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from worldrt.telemetry._otlp import LeanSpanExporter

    return LeanSpanExporter(api.resource, api.scope)


def start_tracing(service: str, *, flag: bool | None = None, library: bool = False) -> bool:
    """Turn tracing on for this process as ``service`` (unless OTEL_SERVICE_NAME names it) when it is
    asked for; whether it is on. Asked for but not installed: a warning that says what to install.

    A worldrt program (a daemon, the CLI) makes its provider the process's and puts the choice in the
    environment for the daemons it starts. A ``library`` (the client, inside someone's application) does
    neither: its spans go to its own exporter, as children of the application's current span, and the
    application's own tracing is left as the application sets it up. What is buffered is exported at exit,
    for at most ``EXIT_GRACE_S`` (a collector that does not answer does not hold the process)."""
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

        # The SDK's provider reads OTEL_TRACES_SAMPLER(_ARG); its sampler decides each root span.
        provider = TracerProvider(resource=Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME") or service}), shutdown_on_exit=False)
        api.resource, api.sampler = provider.resource, provider.sampler
        names = [n.strip() for n in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",") if n.strip()]
        exporters = [_exporter(name, api) for name in names]
    except ImportError as exc:
        log.warning("tracing is asked for, but %s is not installed: pip install 'world-runtime[otel]'", exc.name)
        return False
    except ValueError as exc:
        log.warning("tracing stays off: %s", exc)
        return False
    api.processors = [BatchSpanProcessor(exporter) for exporter in exporters]
    for processor in api.processors:
        provider.add_span_processor(processor)
    api.provider = provider
    if not library:
        api.trace.set_tracer_provider(provider)
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    api.always = api.sampler is ALWAYS_ON or (isinstance(api.sampler, ParentBased)
                                              and getattr(api.sampler, "_root", None) is ALWAYS_ON)
    _api, _tracer = api, provider.get_tracer("worldrt")
    if not library:  # daemons this process starts inherit the choice
        os.environ.setdefault("OTEL_TRACES_EXPORTER", ",".join(names))
    atexit.register(stop_tracing)
    return True


EXIT_GRACE_S = 3.0


def stop_tracing(grace_s: float = EXIT_GRACE_S) -> None:
    """Export what is buffered and stop, waiting at most ``grace_s`` for the collector (exit does this)."""
    global _tracer
    if _tracer is None:
        return
    _tracer = None
    exporting = threading.Thread(target=_api.provider.shutdown, name="worldrt-trace-export", daemon=True)
    exporting.start()
    try:
        exporting.join(grace_s)
    except KeyboardInterrupt:  # a second Ctrl-C: leave the spans
        return
    if exporting.is_alive():
        log.warning("tracing: the spans still buffered were not exported within %.0f s (does the collector at %s "
                    "answer?); leaving without them", grace_s,
                    os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
                        "OTEL_EXPORTER_OTLP_ENDPOINT") or "localhost:4317")


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^ ]*)?")
_NO_TRACE, _NO_SPAN = "0" * 32, "0" * 16


def _parent(carrier: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> Any:
    """The remote SpanContext a W3C ``traceparent`` (and ``tracestate``) names, None if none is valid.
    Keys are matched in lower case, as gRPC metadata, HTTP/2 and the lattice's NATS headers carry them."""
    if carrier is None:
        return None
    if isinstance(carrier, Mapping):
        traceparent, tracestate = carrier.get("traceparent"), carrier.get("tracestate")
    else:
        traceparent = tracestate = None
        for key, value in carrier:
            if key == "traceparent":
                traceparent = value
            elif key == "tracestate":
                tracestate = value
    if not isinstance(traceparent, str) or len(traceparent) > 512:
        return None
    found = _TRACEPARENT.fullmatch(traceparent.strip())
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _NO_TRACE or span_id == _NO_SPAN:
        return None
    state = None
    if isinstance(tracestate, str) and tracestate and len(tracestate) <= 512:
        state = _api.TraceState.from_header([tracestate])
    return _api.SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                            trace_flags=_api.flags[int(flags, 16) & 1], trace_state=state)


class Span:
    """A span, or nothing while tracing is off (``NOOP``); also a context manager that makes it current
    and ends it, its status taken from the exception that ends the block.

    A span is a plain record (name, ids, attributes, times) until it ends; then, if sampled, it goes to
    the SDK's batch span processor as a ``ReadableSpan`` for the configured exporter. This keeps a span's
    cost to a few microseconds: the SDK's own span objects cost several times more per call."""

    __slots__ = ("_attributes", "_context", "_events", "_kind", "_name", "_parent", "_start", "_status",
                 "_statused", "_token")

    def __init__(self, name: str, context: Any, parent: Any, kind: Any,
                 attributes: dict[str, str | int | float | bool] | None) -> None:
        self._name = name
        self._context = context  # None: the NOOP span
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._events: list[Any] | None = None
        self._status: Any = None
        self._start = time.time_ns()
        self._token: Any = None
        self._statused = False

    @property
    def recording(self) -> bool:
        return self._attributes is not None

    def set(self, key: str, value: str | float | bool) -> None:
        if self._attributes is not None:
            self._attributes[key] = value

    def status(self, code: grpc.StatusCode, message: str = "") -> None:
        if self._attributes is None:
            return
        self._statused = True
        self._attributes[GRPC_STATUS] = code.value[0]
        if code is not grpc.StatusCode.OK:
            self._status = _api.trace.Status(_api.trace.StatusCode.ERROR, message or code.name)

    def failed(self, exc: BaseException) -> None:
        if self._attributes is None:
            return
        if isinstance(exc, WorldError):
            self.status(exc.code, exc.message)
        elif isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
            self.status(grpc.StatusCode.CANCELLED, "cancelled")
        elif isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
            self.status(exc.code(), str(getattr(exc, "details", lambda: "")() or ""))
        else:
            if self._events is None:
                self._events = []
            self._events.append(_api.Event("exception", {"exception.type": type(exc).__name__,
                                                         "exception.message": str(exc)}))
            self.status(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")

    def carrier(self) -> Carrier:
        """This span's W3C trace context, as metadata pairs for the next hop."""
        ctx = self._context
        if ctx is None:
            return []
        pairs = [("traceparent", f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}")]
        if ctx.trace_state:
            pairs.append(("tracestate", ctx.trace_state.to_header()))
        return pairs

    def child(self, name: str, attributes: Mapping[str, str | int | float | bool] | None = None) -> Span:
        """A span under this one, whether or not this one is current."""
        if self._context is None or _tracer is None:
            return NOOP
        return _start(name, self._context, _api.kinds["internal"], attributes)

    def ids(self) -> tuple[str, str] | None:
        """(trace id, span id) in hex."""
        ctx = self._context
        if ctx is None:
            return None
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    def end(self, error: BaseException | None = None) -> None:
        if self._context is None:
            return
        if error is not None:
            self.failed(error)
        if self._attributes is None or _tracer is None:
            return  # not sampled (or tracing stopped): nothing to export
        readable = _api.ReadableSpan(
            self._name, self._context, self._parent, _api.resource, self._attributes, self._events or (), (),
            self._kind, None, self._status or _api.unset, self._start, time.time_ns(), _api.scope)
        for processor in _api.processors:
            processor.on_end(readable)
        self._attributes = None  # ended: a second end exports nothing

    def __enter__(self) -> Self:
        if self._context is not None:
            self._token = _api.context.attach(_api.trace.set_span_in_context(_api.NonRecordingSpan(self._context)))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._context is None:
            return
        if exc is not None and not self._statused and not isinstance(exc, GeneratorExit):
            self.failed(exc)
        self.end()
        if self._token is not None:
            _api.context.detach(self._token)
            self._token = None


NOOP = Span("", None, None, None, None)


def _start(name: str, parent: Any, kind: Any, attributes: Mapping[str, str | int | float | bool] | None) -> Span:
    """A span under the SpanContext ``parent`` (a root span when None): sampled as its parent is, a root
    as the SDK's sampler decides (OTEL_TRACES_SAMPLER); one not sampled carries its context, records nothing."""
    if parent is not None and parent.is_valid:
        trace_id, sampled = parent.trace_id, bool(parent.trace_flags & 1)
        state = parent.trace_state
    else:
        parent, state = None, None
        trace_id = random.getrandbits(128) or 1
        sampled = _api.always or _api.sampler.should_sample(
            None, trace_id, name, attributes=attributes).decision.is_sampled()
    context = _api.SpanContext(trace_id, random.getrandbits(64) or 1, is_remote=False,
                               trace_flags=_api.flags[sampled], trace_state=state)
    return Span(name, context, parent, kind, (dict(attributes) if attributes else {}) if sampled else None)


def span(name: str, attributes: Mapping[str, str | int | float | bool] | None = None, *, kind: str = "internal",
         parent: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None) -> Span:
    """A new span (started now; ``with`` makes it current and ends it, else call ``end``), child of the
    current span or of the W3C context in ``parent`` (gRPC metadata pairs or NATS headers)."""
    if _tracer is None:
        return NOOP
    remote = _parent(parent) if parent is not None else None
    if remote is None:
        remote = _api.trace.get_current_span().get_span_context()
    return _start(name, remote, _api.kinds[kind], attributes)


def carrier() -> Carrier:
    """The current span's W3C trace context as metadata pairs (none while tracing is off)."""
    if _tracer is None:
        return []
    ctx = _api.trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return []
    return Span("", ctx, None, None, None).carrier()


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
