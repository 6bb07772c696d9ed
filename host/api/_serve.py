"""Serving the Morph-compatible API until SIGTERM or SIGINT, behind the guard and the server's bounds
(``HttpLimits``); on the way out the instances and snapshots it made are stopped (its records die with it,
so nothing else would own them)."""

from __future__ import annotations

import logging

from worldrt.errors import InvalidArgument
from worldrt.host import HostAPI
from worldrt.host.api._app import UNAUTHORIZED, create_app, problem_body
from worldrt.host.api._guard import bearer
from worldrt.host.api._limits import HttpLimits
from worldrt.host.api._morph import DEFAULT_EXEC_TIMEOUT_MS, MAX_BRANCHES, MorphApi
from worldrt.host.api._server import loopback_listen, serve_guarded

log = logging.getLogger("worldrt.api.morph")
DEFAULT_LISTEN = "127.0.0.1:8780"


def parse_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a loopback ``HOST:PORT``: the API is plain HTTP, so its key must not cross a network."""
    return loopback_listen(listen, "the Morph API on {listen}: it speaks plain HTTP, so its API key would cross the network "
                                   "readable; listen on loopback (127.0.0.1) and put a TLS proxy in front of it to reach it "
                                   "from elsewhere")


def serve_morph_api(host: HostAPI, listen: str, api_key: str, *, exec_timeout_ms: int | None = None,
                    max_branches: int | None = None, limits: HttpLimits | None = None) -> int:
    """Serve ``http://LISTEN/api`` through ``host``; the number of instances and snapshots stopped at exit."""
    if not api_key:
        raise InvalidArgument("the Morph API needs an API key: --api-key KEY or MORPH_API_KEY")
    address, port = parse_listen(listen)
    api = MorphApi(host, exec_timeout_ms=exec_timeout_ms or DEFAULT_EXEC_TIMEOUT_MS,
                   max_branches=max_branches or MAX_BRANCHES)
    api.link()
    api.start_expiry()
    limits = limits or HttpLimits()
    log.info("Morph-compatible API at http://%s:%d/api", address, port)
    try:
        serve_guarded(create_app(api, limits), address, port, limits, authorized=bearer(api_key), problem=problem_body,
                      unauthorized=UNAUTHORIZED)
    finally:
        stopped = api.close()
        log.info("Morph-compatible API stopped (%d instances and snapshots released)", stopped)
    return stopped
