"""The provider SDK: write a provider as a class of the seed trait's methods, serve it as a daemon, and
start, probe and reach daemons (over unix sockets, or TCP with TLS and a bearer token)."""

from typing import TYPE_CHECKING

from worldrt.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    WorldError,
)
from worldrt.faces import lazy_names
from worldrt.providers._auth import (
    OPEN_PREFIXES,
    TOKEN_ENV,
    BearerTokenInterceptor,
    TokenError,
    bearer_problem,
    ensure_token_file,
    expected_header,
    read_token_file,
    token_from,
)
from worldrt.providers._canonical import canonical_json, digest, is_digest, parse_json
from worldrt.providers._catalog import CATALOG, ProviderInfo, providers_for
from worldrt.providers._channel import (
    ClientTls,
    InsecureChannelError,
    is_loopback,
    open_aio_channel,
    open_channel,
    refuse_cleartext_token,
    tcp_host,
)
from worldrt.providers._child_daemons import serving, spawn_daemon, wait_serving
from worldrt.providers._exits import exit_now, terminate, wait_exit
from worldrt.providers._files import (
    NORMAL_UMASK,
    make_private,
    private_dir,
    private_umask,
)
from worldrt.providers._links import Link, LinkTable
from worldrt.providers._metering import Meter, PriceTable

if TYPE_CHECKING:
    from worldrt.providers._daemon import default_state_dir, run_provider
    from worldrt.providers._provider import Call, Provider, ProviderOptions
    from worldrt.providers._serve_options import add_serve_arguments, engine_values
    from worldrt.providers._server import ServerTls, bind, listen_address, serve

# Serving a provider (its gRPC server, health and reflection services, servicer) is imported on first use: a
# client of a host or a daemon (the CLI) does not load it.
_LAZY = {"default_state_dir": "_daemon", "run_provider": "_daemon", "Call": "_provider", "Provider": "_provider",
         "ProviderOptions": "_provider", "add_serve_arguments": "_serve_options", "engine_values": "_serve_options",
         "ServerTls": "_server", "bind": "_server", "listen_address": "_server", "serve": "_server"}
__getattr__ = lazy_names(__name__, _LAZY)

__all__ = [
    "add_serve_arguments", "engine_values",
    # writing a provider
    "Provider", "ProviderOptions", "Call", "PriceTable", "Meter", "Link", "LinkTable",
    # errors (the project's one root, re-exported)
    "WorldError", "NotFound", "InvalidArgument", "FailedPrecondition", "DeadlineExceeded",
    "ResourceExhausted", "Unimplemented", "Unavailable", "Aborted",
    # running one
    "serve", "run_provider", "default_state_dir", "listen_address", "bind", "ServerTls",
    # reaching and starting daemons
    "open_channel", "open_aio_channel", "ClientTls", "InsecureChannelError", "refuse_cleartext_token", "tcp_host", "is_loopback",
    "serving", "wait_serving", "spawn_daemon", "exit_now", "terminate", "wait_exit",
    # bearer tokens
    "TOKEN_ENV", "TokenError", "read_token_file", "token_from", "ensure_token_file", "bearer_problem",
    "expected_header", "OPEN_PREFIXES", "BearerTokenInterceptor",
    # private files
    "private_dir", "make_private", "private_umask", "NORMAL_UMASK",
    # the design's providers
    "CATALOG", "ProviderInfo", "providers_for",
    # the contract's shared formats
    "canonical_json", "digest", "is_digest", "parse_json",
]
