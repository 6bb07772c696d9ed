"""Telemetry: OpenTelemetry traces, Prometheus metrics and trace-aware logs, each off unless asked for.

Traces (``span``, ``carrier``, ``start_tracing``) follow the standard ``OTEL_*`` variables or ``--otel``;
metrics (``inc``, ``observe``, ``watch``, ``serve_metrics``) are served at ``--metrics-listen``; logs
(``setup_logging``) are text or JSON lines that name the current trace. ``setup`` does the three for a
daemon from its flags. Nothing here costs more than a test of a module global while it is off.
"""

from __future__ import annotations

from worldrt.telemetry._logs import FORMAT_ENV, FORMATS, log_format, setup_logging
from worldrt.telemetry._metrics import (
    METRICS,
    MetricsListener,
    federate,
    inc,
    metrics_on,
    observe,
    serve_metrics,
    watch,
)
from worldrt.telemetry._servers import asgi_spans, server_interceptors
from worldrt.telemetry._setup import ANNOUNCE_ENV, add_telemetry_arguments, flush, setup, suspended
from worldrt.telemetry._traces import (
    GRPC_STATUS,
    NOOP,
    TRACE_KEYS,
    Carrier,
    Span,
    carrier,
    current_ids,
    span,
    start_tracing,
    stop_tracing,
    traced,
    tracing,
    wanted,
    without_trace,
)

__all__ = [
    "ANNOUNCE_ENV", "Carrier", "FORMATS", "FORMAT_ENV", "GRPC_STATUS", "METRICS", "MetricsListener", "NOOP", "Span",
    "TRACE_KEYS", "add_telemetry_arguments", "asgi_spans", "carrier", "current_ids", "federate", "flush", "inc",
    "log_format", "metrics_on", "observe", "serve_metrics", "server_interceptors", "setup", "setup_logging", "span",
    "start_tracing", "stop_tracing", "suspended", "traced", "tracing", "wanted", "watch", "without_trace",
]
