"""A daemon's telemetry from its flags: ``--otel``, ``--metrics-listen HOST:PORT``, ``--log-format``."""

from __future__ import annotations

import argparse
import logging

from worldrt.telemetry._logs import setup_logging
from worldrt.telemetry._metrics import MetricsListener, serve_metrics
from worldrt.telemetry._traces import start_tracing

log = logging.getLogger("worldrt.telemetry")


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
    return listener
