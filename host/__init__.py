"""The world-runtime host: the ``Host`` facade (registry, supervised providers, links, routers and the
component runtime in one object), its gRPC service ``worldrt.v1.Host``, and a client that talks to a
running host or embeds one. The rooms below: ``runtime`` (wasm), ``lattice`` (links, routing, providers),
``registry`` (DuckDB), ``verse`` (pipeline and analytics), ``cli`` (the ``worldrt`` command)."""

from worldrt.host._api import EventSink, HostAPI
from worldrt.host._client import HOST_TOKEN_FILE, RemoteHost, Session
from worldrt.host._host import OUTPUT_EVENT_CAP, Host, HostError, default_db, default_home
from worldrt.host._service import default_host_address, serve_host

__all__ = ["Host", "HostError", "Session", "RemoteHost", "serve_host", "default_db", "default_home",
           "default_host_address", "HOST_TOKEN_FILE", "OUTPUT_EVENT_CAP",
           "HostAPI", "EventSink"]
