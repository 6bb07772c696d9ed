"""The link and routing plane: the link table, the routers that turn a component's call into a
provider's, the supervisor of the host's provider daemons, and the certificates for TLS between
machines, and the NATS lattice: its server, its identities and their permissions, the bridge of local
providers onto it, the lattice router, its buckets and the streams that feed one registry (LATTICE.md)."""

import importlib
from typing import TYPE_CHECKING, Any

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

# The NATS lattice is imported when first used: a host on one machine never loads the NATS client.
_LAZY = {
    "_calls": ("Answer", "Caller"),
    "_creds": ("ADMIN", "HOST", "REGISTRY", "Credential", "CredentialError", "init_creds", "load_credential",
               "read_public"),
    "_ingest": ("Ingest",),
    "_lattice_router": ("LatticeRouter", "capabilities"),
    "_member": ("Member", "StreamLimits", "bucket_values", "delete_link", "ensure_streams", "fresh", "link_from_value",
                "list_links", "make_buckets", "put_link"),
    "_secrets": ("SECRETS_DIR_ENV", "SecretError", "read_secret", "read_secret_file", "secrets_dir"),
    "_nats": ("CREDS_ENV", "LATTICE_ENV", "PASSWORD_ENV", "TOKEN_ENV", "Lattice", "LatticeError", "LatticeOptions",
              "check_token"),
    "_server": ("NatsServer", "ServerConfig", "nats_server_binary"),
    "_wire": ("METHODS", "hosts_bucket", "providers_bucket", "rpc_subject"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

if TYPE_CHECKING:
    from worldrt.host.lattice._calls import Answer, Caller
    from worldrt.host.lattice._creds import (
        ADMIN,
        HOST,
        REGISTRY,
        Credential,
        CredentialError,
        init_creds,
        load_credential,
        read_public,
    )
    from worldrt.host.lattice._ingest import Ingest
    from worldrt.host.lattice._lattice_router import LatticeRouter, capabilities
    from worldrt.host.lattice._member import (
        Member,
        StreamLimits,
        bucket_values,
        delete_link,
        ensure_streams,
        fresh,
        link_from_value,
        list_links,
        make_buckets,
        put_link,
    )
    from worldrt.host.lattice._nats import (
        CREDS_ENV,
        LATTICE_ENV,
        PASSWORD_ENV,
        TOKEN_ENV,
        Lattice,
        LatticeError,
        LatticeOptions,
        check_token,
    )
    from worldrt.host.lattice._secrets import (
        SECRETS_DIR_ENV,
        SecretError,
        read_secret,
        read_secret_file,
        secrets_dir,
    )
    from worldrt.host.lattice._server import NatsServer, ServerConfig, nats_server_binary
    from worldrt.host.lattice._wire import METHODS, hosts_bucket, providers_bucket, rpc_subject


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

__all__ = [
    "LinkTable", "HostLink", "LinkError", "INTERFACES", "ANY_SOURCE",
    "LinkRouter", "DirectRouter", "CallObserver", "CallReport", "cost_of",
    "Supervisor", "SupervisorError", "Child",
    "init_tls", "parse_hosts", "Issued", "CertificateError",
    "Lattice", "LatticeOptions", "LatticeError", "LATTICE_ENV", "TOKEN_ENV", "PASSWORD_ENV", "CREDS_ENV", "check_token",
    "fresh",
    "Credential", "CredentialError", "init_creds", "load_credential", "read_public", "ADMIN", "HOST", "REGISTRY",
    "NatsServer", "ServerConfig", "nats_server_binary",
    "Caller", "Answer", "Member", "LatticeRouter", "capabilities", "Ingest",
    "put_link", "delete_link", "list_links", "link_from_value", "bucket_values", "make_buckets", "ensure_streams",
    "StreamLimits", "SECRETS_DIR_ENV", "SecretError", "read_secret", "read_secret_file", "secrets_dir",
    "METHODS", "rpc_subject", "hosts_bucket", "providers_bucket",
]
