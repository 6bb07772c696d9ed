"""The world-runtime host: the ``Host`` facade (registry, supervised providers, links, routers and the
component runtime in one object), its gRPC service ``worldrt.v1.Host``, and a client that talks to a
running host or embeds one. The rooms below: ``runtime`` (wasm), ``lattice`` (links, routing, providers),
``registry`` (DuckDB), ``verse`` (pipeline and analytics), ``cli`` (the ``worldrt`` command)."""

from typing import TYPE_CHECKING, Any

from worldrt.host._client import HOST_TOKEN_FILE, RemoteHost, Session
from worldrt.host._host import Host, HostError, default_db, default_home
from worldrt.host._service import default_host_address, serve_host

if TYPE_CHECKING:
    from worldrt.host._lattice_host import LatticeHost


def __getattr__(name: str) -> Any:
    # The lattice host (and the NATS client under it) is loaded only by a host that joins a lattice.
    if name == "LatticeHost":
        from worldrt.host._lattice_host import LatticeHost

        globals()[name] = LatticeHost
        return LatticeHost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Host", "LatticeHost", "HostError", "Session", "RemoteHost", "serve_host", "default_db", "default_home",
           "default_host_address", "HOST_TOKEN_FILE"]
