"""Links and routing: the link table (which provider serves each interface a component imports), the
router (the one path of every call a host makes to a provider), the transport to the host's own
supervised provider daemons, the supervisor that keeps them running, and the certificates for TLS
between machines. The NATS lattice (host/lattice) adds a second transport and the lattice's links."""

from typing import TYPE_CHECKING, Any

from worldrt.host.routing._links import (
    ANY_SOURCE,
    INTERFACES,
    MAX_SECRET_BYTES,
    SECRET_VALUES,
    HostLink,
    LinkError,
    LinkTable,
    check_secret,
)
from worldrt.host.routing._methods import METHODS, Method
from worldrt.host.routing._router import CallObserver, CallReport, DirectRouter, Router
from worldrt.host.routing._supervisor import Child, Supervisor, SupervisorError
from worldrt.host.routing._transport import (
    COST,
    REPLICA,
    LocalTransport,
    Metadata,
    Reply,
    Target,
    Transport,
    cost_of,
    provider_state,
    replica_of,
)

if TYPE_CHECKING:
    from worldrt.host.routing._certificates import CertificateError, Issued, init_tls, parse_hosts

# The certificates' module is imported on first use: cryptography's x509 costs the embedded host's start-up
# (every cold `worldrt verse pipeline`) about 60 ms, and only `worldrt lattice init-tls` and TLS hosts need it.
_CERTIFICATES = frozenset({"CertificateError", "Issued", "init_tls", "parse_hosts"})


def __getattr__(name: str) -> Any:
    if name not in _CERTIFICATES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from worldrt.host.routing import _certificates

    value = getattr(_certificates, name)
    globals()[name] = value
    return value


__all__ = [
    "LinkTable", "HostLink", "LinkError", "INTERFACES", "ANY_SOURCE", "SECRET_VALUES", "MAX_SECRET_BYTES", "check_secret",
    "Router", "DirectRouter", "CallObserver", "CallReport", "METHODS", "Method",
    "Transport", "Target", "Reply", "Metadata", "LocalTransport", "COST", "REPLICA", "cost_of", "replica_of", "provider_state",
    "Supervisor", "SupervisorError", "Child",
    "init_tls", "parse_hosts", "Issued", "CertificateError",
]
