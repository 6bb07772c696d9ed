"""The world-runtime host: the ``Host`` facade (registry, supervised providers, links, routers and the
component runtime in one object), its gRPC service ``worldrt.v1.Host``, and a client that talks to a
running host or embeds one. The rooms below: ``runtime`` (wasm), ``routing`` (links, the router every
provider call takes, the supervised provider daemons), ``lattice`` (NATS: hosts on many machines as one),
``registry`` (DuckDB), ``verse`` (pipeline and analytics), ``api`` (vendors' HTTP APIs), ``cli`` (the
``worldrt`` command)."""

from typing import TYPE_CHECKING

from worldrt.faces import lazy_names
from worldrt.host._admission import DEFAULT_CALLS, DEFAULT_PER_INSTANCE, ServiceLimits
from worldrt.host._api import BY_NAME, METHODS, EventSink, HostAPI, Method
from worldrt.host._client import HOST_TOKEN_FILE, RemoteHost, Session
from worldrt.host._connect import host_session
from worldrt.host._paths import default_db, default_home, default_host_address

if TYPE_CHECKING:
    from worldrt.host._host import OUTPUT_EVENT_CAP, Host, HostError
    from worldrt.host._service import serve_host

# Imported on first use: the CLI talking to a running host never needs DuckDB, wasmtime or the lattice.
# The NATS client is loaded only by a host that joins a lattice.
_LAZY = {"Host": "_host", "HostError": "_host", "OUTPUT_EVENT_CAP": "_host", "serve_host": "_service"}
__getattr__ = lazy_names(__name__, _LAZY)


__all__ = ["Host", "HostError", "Session", "RemoteHost", "serve_host", "default_db", "default_home",
           "default_host_address", "HOST_TOKEN_FILE", "OUTPUT_EVENT_CAP", "HostAPI", "EventSink", "ServiceLimits",
           "DEFAULT_CALLS", "DEFAULT_PER_INSTANCE", "host_session", "METHODS", "BY_NAME", "Method"]
