"""The NATS lattice: hosts on many machines as one (README, "Many machines"). Its server and the
identities and permissions it enforces, a host's membership (heartbeats, the links bucket it watches,
the streams it publishes its registry rows to), the bridge that serves a host's providers onto it, the
caller and the transport that take a host's calls to a replica on any host, the secrets a link names by
key, and the registry's consumer of those streams. Links and the router itself are host/routing's.

The whole package is imported when first used: a host on one machine never loads the NATS client."""

from typing import TYPE_CHECKING

from worldrt.faces import lazy_names

_LAZY = {
    "_calls": ("Answer", "Caller"),
    "_creds": ("ADMIN", "HOST", "REGISTRY", "Credential", "CredentialError", "init_creds", "load_credential",
               "read_public"),
    "_ingest": ("Ingest",),
    "_transport": ("LatticeTransport",),
    "_member": ("Member", "StreamLimits", "bucket_values", "delete_link", "ensure_streams", "fresh", "link_from_value",
                "list_links", "make_buckets", "put_link"),
    "_secrets": ("SECRETS_DIR_ENV", "SecretError", "read_secret", "read_secret_file", "secrets_dir"),
    "_nats": ("CREDS_ENV", "LATTICE_ENV", "PASSWORD_ENV", "TOKEN_ENV", "Lattice", "LatticeError", "LatticeOptions",
              "LatticeDown", "LatticeRefused", "LatticeForbidden", "LatticeConflict", "LatticeConfigError",
              "check_token"),
    "_server": ("NatsServer", "ServerConfig", "nats_server_binary"),
    "_wire": ("hosts_bucket", "providers_bucket", "rpc_subject"),
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
        LatticeConfigError,
        LatticeConflict,
        LatticeDown,
        LatticeError,
        LatticeForbidden,
        LatticeOptions,
        LatticeRefused,
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
    from worldrt.host.lattice._transport import LatticeTransport
    from worldrt.host.lattice._wire import hosts_bucket, providers_bucket, rpc_subject


__getattr__ = lazy_names(__name__, _WHERE)

__all__ = [
    "Lattice", "LatticeOptions", "LatticeError", "LatticeDown", "LatticeRefused", "LatticeForbidden",
    "LatticeConflict", "LatticeConfigError", "LATTICE_ENV", "TOKEN_ENV", "PASSWORD_ENV", "CREDS_ENV", "check_token",
    "fresh",
    "Credential", "CredentialError", "init_creds", "load_credential", "read_public", "ADMIN", "HOST", "REGISTRY",
    "NatsServer", "ServerConfig", "nats_server_binary",
    "Caller", "Answer", "Member", "LatticeTransport", "Ingest",
    "put_link", "delete_link", "list_links", "link_from_value", "bucket_values", "make_buckets", "ensure_streams",
    "StreamLimits", "SECRETS_DIR_ENV", "SecretError", "read_secret", "read_secret_file", "secrets_dir",
    "rpc_subject", "hosts_bucket", "providers_bucket",
]
