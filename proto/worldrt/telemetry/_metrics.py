"""Metrics: a Prometheus ``/metrics`` endpoint per daemon, off unless ``--metrics-listen`` asks for it.

Every metric worldrt exports is declared once in ``METRICS`` (name, kind, help, labels), with the
conventional suffixes and base units (``_total``, ``_seconds``, ``_bytes``). Gauges of what a daemon
holds (instances, snapshots, processes, warm pools, replicas) are read when scraped, from the functions
given to ``watch``: nothing is counted between scrapes.

Invariants: until ``serve_metrics`` runs, ``inc``, ``observe`` and ``watch`` return at once and
prometheus_client is not even imported. A listener off loopback needs TLS (the daemon's own
``--tls-cert``/``--tls-key``, and ``--tls-client-ca`` for client certificates) unless ``insecure``.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worldrt.errors import InvalidArgument, Unavailable

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

# name -> (kind, help, labels); kind "watch" is a gauge read at each scrape (``watch``)
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # the host's router: every provider call, by provider, operation and gRPC status code
    "worldrt_provider_calls_total": ("counter", "Provider calls made by the host's router", ("provider", "operation", "code")),
    "worldrt_provider_call_duration_seconds": ("histogram", "Provider call latency seen by the host, start-up wait included",
                                               ("provider", "operation", "code")),
    "worldrt_provider_startup_wait_seconds": ("histogram", "Time a call waited for its provider's daemon to start",
                                              ("provider",)),
    # a provider daemon: every request it handled
    "worldrt_provider_requests_total": ("counter", "Requests a provider daemon handled", ("provider", "operation", "code")),
    "worldrt_provider_request_duration_seconds": ("histogram", "Time a provider daemon took to handle a request",
                                                  ("provider", "operation", "code")),
    "worldrt_sandbox_instances": ("watch", "Sandbox instances live", ("provider",)),
    "worldrt_sandbox_snapshots": ("watch", "Snapshots held", ("provider",)),
    "worldrt_sandbox_processes": ("watch", "Processes started in instances and still known", ("provider",)),
    "worldrt_warm_pool_size": ("watch", "Pre-started sandboxes waiting in warm pools", ("provider",)),
    "worldrt_warm_pool_misses_total": ("counter", "Starts that found no warm sandbox ready", ("provider",)),
    "worldrt_image_builds_total": ("counter", "Image builds, by outcome (built, cached, failed)", ("provider", "outcome")),
    "worldrt_image_build_duration_seconds": ("histogram", "Image build time", ("provider",)),
    # the host's components
    "worldrt_component_invocations_total": ("counter", "Component invocations, by outcome (ok or the error kind)",
                                            ("component", "outcome")),
    "worldrt_component_invocation_duration_seconds": ("histogram", "Component invocation time", ("component",)),
    # the registry's writer
    "worldrt_registry_rows_queued": ("watch", "Registry rows journaled and waiting to be written", ()),
    "worldrt_registry_rows_written_total": ("counter", "Registry rows written to DuckDB", ("table",)),
    "worldrt_registry_write_lag_seconds": ("histogram", "Time from a row's journaling to its commit in DuckDB", ()),
    # the lattice
    "worldrt_lattice_replicas": ("watch", "Fresh replicas of each provider on the lattice", ("provider",)),
    "worldrt_lattice_failovers_total": ("counter", "Lattice calls sent again to another replica", ("provider",)),
    "worldrt_lattice_bridged_total": ("counter", "Lattice calls this host's bridge served, by status code",
                                      ("provider", "operation", "code")),
}

_metrics: dict[str, Any] | None = None  # name -> the prometheus_client metric, once metrics are on
_lock = threading.Lock()
_children: dict[tuple[str, tuple[str, ...]], Any] = {}  # (name, label values) -> bound child


def metrics_on() -> bool:
    return _metrics is not None


def _child(name: str, labels: tuple[str, ...]) -> Any:
    """The metric ``name`` bound to these label values, bound once and kept (no lock on the hot path)."""
    key = (name, labels)
    found = _children.get(key)
    if found is None:
        metric = _metrics[name]  # type: ignore[index]
        found = _children[key] = metric.labels(*labels) if labels else metric
    return found


def inc(name: str, *labels: str, by: float = 1.0) -> None:
    """Add ``by`` to the counter ``name`` with these label values (nothing while metrics are off)."""
    if _metrics is None:
        return
    _child(name, labels).inc(by)


def observe(name: str, value: float, *labels: str) -> None:
    """One observation of the histogram ``name``; or the gauge's value."""
    if _metrics is None:
        return
    target = _child(name, labels)
    if METRICS[name][0] == "gauge":
        target.set(value)
    else:
        target.observe(value)


# name -> a function giving {provider: its /metrics URL} at each scrape (``federate``)
_federated: dict[str, Callable[[], Mapping[str, str]]] = {}
FEDERATE_TIMEOUT_S = 2.0
MAX_FEDERATED_BYTES = 4 << 20


def federate(name: str, targets: Callable[[], Mapping[str, str]]) -> None:
    """Re-expose, at each scrape of this process's /metrics, the metrics of the daemons ``targets()`` names
    ({provider: URL}), each sample labelled ``provider`` (when it has none) and ``worldrt_daemon_up{provider}``
    1 or 0 as its scrape went. Registering ``name`` again replaces its function."""
    _federated[name] = targets


def _scrape(provider: str, url: str) -> list[Any] | None:
    """The families at ``url`` (a daemon this process started, on loopback), labelled; None if unreachable."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=FEDERATE_TIMEOUT_S) as reply:
            text = reply.read(MAX_FEDERATED_BYTES + 1)
        if len(text) > MAX_FEDERATED_BYTES:
            return None
        families = list(text_string_to_metric_families(text.decode("utf-8", "replace")))
    except (OSError, ValueError):
        return None
    for family in families:
        family.samples = [s if "provider" in s.labels else s._replace(labels={**s.labels, "provider": provider})
                          for s in family.samples]
    return families


class _Merged:
    """This process's registry and the federated daemons' families, merged by name (a family appears once
    in an exposition, however many processes report it)."""

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.registry import REGISTRY

        merged: dict[str, Any] = {}
        for family in REGISTRY.collect():
            merged[family.name] = family
        if _federated:
            up = GaugeMetricFamily("worldrt_daemon_up", "Whether the host's last scrape of a daemon's metrics worked",
                                   labels=["provider"])
            for targets in list(_federated.values()):
                try:
                    listed = dict(targets())
                except Exception:  # noqa: BLE001 - a scrape must not fail for one list
                    listed = {}
                for provider, url in sorted(listed.items()):
                    families = _scrape(provider, url)
                    up.add_metric([provider], 0.0 if families is None else 1.0)
                    for family in families or ():
                        have = merged.get(family.name)
                        if have is None:
                            merged[family.name] = family
                        elif have.type == family.type:
                            have.samples = [*have.samples, *family.samples]
            merged[up.name] = up
        yield from merged.values()


def watch(name: str, read: Callable[[], Mapping[tuple[str, ...], float]]) -> None:
    """Give the gauge ``name`` its values at each scrape: ``read()`` maps label values to a value."""
    if _metrics is None:
        return
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import REGISTRY

    kind, help_text, labels = METRICS[name]
    if kind != "watch":
        raise ValueError(f"{name} is a {kind}, not a gauge read at each scrape")

    class _Watched:
        def collect(self) -> Any:
            family = GaugeMetricFamily(name, help_text, labels=list(labels))
            try:
                values = read()
            except Exception:  # noqa: BLE001 - a scrape must not fail for one gauge
                values = {}
            for key, value in values.items():
                family.add_metric(list(key), value)
            yield family

    with _lock:
        if name in _watched:
            REGISTRY.unregister(_watched[name])
        _watched[name] = _Watched()
        REGISTRY.register(_watched[name])


_watched: dict[str, Any] = {}


@dataclass(frozen=True)
class MetricsListener:
    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/metrics"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidArgument(f"--metrics-listen must be HOST:PORT (127.0.0.1:9464, say), got {listen!r}")
    return host.strip("[]"), int(port)


def serve_metrics(listen: str, *, cert: str | None = None, key: str | None = None, client_ca: str | None = None,
                  insecure: bool = False) -> MetricsListener:
    """Serve ``/metrics`` on ``listen`` (HOST:PORT; port 0 picks one) from a thread, and turn metrics on."""
    global _metrics
    host, port = split_listen(listen)
    if bool(cert) != bool(key):
        raise InvalidArgument("the metrics listener's TLS needs both --tls-cert and --tls-key")
    if not cert and not _loopback(host) and not insecure:
        raise InvalidArgument(f"refusing to serve metrics on {listen} in cleartext: pass --tls-cert and --tls-key "
                              f"(and --tls-client-ca to require client certificates), listen on loopback, or "
                              f"pass --insecure")
    from prometheus_client import Counter, Gauge, Histogram, start_http_server

    with _lock:
        if _metrics is None:
            made: dict[str, Any] = {}
            for name, (kind, help_text, labels) in METRICS.items():
                if kind == "counter":
                    made[name] = Counter(name.removesuffix("_total"), help_text, labels)
                elif kind == "histogram":
                    made[name] = Histogram(name, help_text, labels, buckets=_SECONDS)
                elif kind == "gauge":
                    made[name] = Gauge(name, help_text, labels)
            _metrics = made
    try:
        server, _thread = start_http_server(port, host, certfile=cert, keyfile=key, client_cafile=client_ca,
                                            client_auth_required=bool(client_ca), registry=_Merged())
    except OSError as exc:
        raise Unavailable(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None
    return MetricsListener(host, int(server.server_address[1]), bool(cert))
