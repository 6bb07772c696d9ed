"""A daemon's telemetry from its flags: ``--otel``, ``--metrics-listen HOST:PORT``, ``--log-format``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator

from worldrt.telemetry import _metrics, _traces
from worldrt.telemetry._logs import setup_logging
from worldrt.telemetry._metrics import MetricsListener, serve_metrics
from worldrt.telemetry._traces import start_tracing

log = logging.getLogger("worldrt.telemetry")
# Where a daemon started by a host writes its metrics URL, for the host to re-expose them.
ANNOUNCE_ENV = "WORLDRT_METRICS_ANNOUNCE"


def add_telemetry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--otel", action="store_true", default=None,
                        help="export OpenTelemetry traces (OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT, default "
                             "localhost:4317); also on when the standard OTEL_* variables ask for it")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (off loopback: TLS with the "
                             "daemon's --tls-cert/--tls-key/--tls-client-ca)")
    parser.add_argument("--log-format", choices=["text", "json"],
                        help="log lines as text (default) or JSON; both name the trace and span they were written in")


def setup(who: str, service: str, args: argparse.Namespace) -> MetricsListener | None:
    """Logging, tracing and the metrics listener for a daemon named ``who`` in its logs and ``service``
    in its traces, as its flags (``add_telemetry_arguments``) and the environment ask."""
    setup_logging(who, getattr(args, "log_format", None))
    if start_tracing(service, flag=getattr(args, "otel", None)):
        log.info("tracing on: %s exports spans", service)
    listen = getattr(args, "metrics_listen", None)
    if not listen:
        return None
    listener = serve_metrics(listen, cert=getattr(args, "tls_cert", None), key=getattr(args, "tls_key", None),
                             client_ca=getattr(args, "tls_client_ca", None), insecure=bool(getattr(args, "insecure", False)))
    log.info("metrics at %s", listener.url)
    announce = os.environ.pop(ANNOUNCE_ENV, "")
    if announce:  # the host that started this daemon re-exposes its metrics (worldrt.telemetry.federate)
        partial = f"{announce}.{os.getpid()}"
        with open(partial, "w", encoding="utf-8") as out:
            out.write(listener.url)
        os.replace(partial, announce)
    return listener


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """A block in which this process's traces and metrics are off, as if never asked for (benchmarks
    compare a call with telemetry off and on in one process with it); spans already ended still export."""
    tracer, metrics = _traces._tracer, _metrics._metrics
    _traces._tracer, _metrics._metrics = None, None
    try:
        yield
    finally:
        _traces._tracer, _metrics._metrics = tracer, metrics


def flush(timeout_s: float = 10.0) -> None:
    """Export the spans ended so far now (a benchmark's block boundary; a daemon's exit does it anyway)."""
    for processor in getattr(_traces._api, "processors", None) or ():
        processor.force_flush(int(timeout_s * 1000))
