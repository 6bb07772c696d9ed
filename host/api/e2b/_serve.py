"""Serving the E2B-compatible API until SIGTERM or SIGINT, behind the guard and the server's bounds
(``HttpLimits``), exactly as the Morph API is served; on the way out the sandboxes and snapshots it made
are stopped (its records die with it, so nothing else would own them)."""

from __future__ import annotations

import logging

from worldrt.errors import InvalidArgument
from worldrt.host import HostAPI
from worldrt.host.api import HttpLimits, loopback_listen, serve_guarded
from worldrt.host.api.e2b._app import UNAUTHORIZED, authorizer, create_app, problem_body
from worldrt.host.api.e2b._sandboxes import E2bApi

log = logging.getLogger("worldrt.api.e2b")
DEFAULT_LISTEN = "127.0.0.1:8791"


def parse_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a loopback ``HOST:PORT``: the API is plain HTTP, so its key must not cross a network."""
    return loopback_listen(listen, "the E2B API on {listen}: it speaks plain HTTP, so its API key and the sandboxes' access "
                                   "tokens would cross the network readable; listen on loopback (127.0.0.1) and put a TLS "
                                   "proxy in front of it to reach it from elsewhere")


def serve_e2b_api(host: HostAPI, listen: str, api_key: str, *, limits: HttpLimits | None = None) -> int:
    """Serve ``http://LISTEN`` through ``host``; the number of sandboxes and snapshots released at exit."""
    if not api_key:
        raise InvalidArgument("the E2B API needs an API key: set E2B_API_KEY in the server's environment")
    address, port = parse_listen(listen)
    api = E2bApi(host)
    api.link()
    api.start_expiry()
    limits = limits or HttpLimits()
    log.info("E2B-compatible API at http://%s:%d (E2B_API_URL and E2B_SANDBOX_URL)", address, port)
    try:
        serve_guarded(create_app(api, limits), address, port, limits, authorized=authorizer(api, api_key),
                      problem=problem_body, unauthorized=UNAUTHORIZED)
    finally:
        released = api.close()
        log.info("E2B-compatible API stopped (%d sandboxes and snapshots released)", released)
    return released
