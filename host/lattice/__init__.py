"""The link and routing plane: the link table, the routers that turn a component's call into a
provider's, the supervisor of the host's provider daemons, and the certificates for TLS between
machines (the NATS lattice lands here)."""

from worldrt.host.lattice._certificates import (
    CertificateError,
    Issued,
    init_tls,
    parse_hosts,
)
from worldrt.host.lattice._links import (
    ANY_SOURCE,
    INTERFACES,
    HostLink,
    LinkError,
    LinkTable,
)
from worldrt.host.lattice._routers import (
    CallObserver,
    CallReport,
    DirectRouter,
    LinkRouter,
    cost_of,
)
from worldrt.host.lattice._supervisor import Child, Supervisor, SupervisorError

__all__ = [
    "LinkTable", "HostLink", "LinkError", "INTERFACES", "ANY_SOURCE",
    "LinkRouter", "DirectRouter", "CallObserver", "CallReport", "cost_of",
    "Supervisor", "SupervisorError", "Child",
    "init_tls", "parse_hosts", "Issued", "CertificateError",
]
