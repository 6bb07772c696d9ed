"""Links and routing: the link table (which provider serves each interface a component imports), the
router (the one path of every call a host makes to a provider), the transport to the host's own
supervised provider daemons, the supervisor that keeps them running, and the certificates for TLS
between machines. The NATS lattice (host/lattice) adds a second transport and the lattice's links."""

from typing import TYPE_CHECKING

from worldrt.faces import lazy_names
from worldrt.host.routing._supervisor import Child, Supervisor, SupervisorError

if TYPE_CHECKING:
    from worldrt.host.routing._certificates import CertificateError, Issued, init_tls, parse_hosts
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

# Only the supervisor is loaded with the package: a command that embeds a host starts its providers before
# it loads the router (which loads wasmtime) and the link table (DuckDB). The certificates' module costs
# the embedded host's start-up about 60 ms more (cryptography's x509); only TLS hosts and init-tls need it.
_LAZY = {
    **dict.fromkeys(["LinkTable", "HostLink", "LinkError", "INTERFACES", "ANY_SOURCE", "SECRET_VALUES",
                     "MAX_SECRET_BYTES", "check_secret"], "_links"),
    **dict.fromkeys(["Router", "DirectRouter", "CallObserver", "CallReport"], "_router"),
    **dict.fromkeys(["METHODS", "Method"], "_methods"),
    **dict.fromkeys(["Transport", "Target", "Reply", "Metadata", "LocalTransport", "COST", "REPLICA", "cost_of",
                     "replica_of", "provider_state"], "_transport"),
    **dict.fromkeys(["CertificateError", "Issued", "init_tls", "parse_hosts"], "_certificates"),
}


__getattr__ = lazy_names(__name__, _LAZY)


__all__ = [
    "LinkTable", "HostLink", "LinkError", "INTERFACES", "ANY_SOURCE", "SECRET_VALUES", "MAX_SECRET_BYTES", "check_secret",
    "Router", "DirectRouter", "CallObserver", "CallReport", "METHODS", "Method",
    "Transport", "Target", "Reply", "Metadata", "LocalTransport", "COST", "REPLICA", "cost_of", "replica_of", "provider_state",
    "Supervisor", "SupervisorError", "Child",
    "init_tls", "parse_hosts", "Issued", "CertificateError",
]
