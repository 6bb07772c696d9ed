"""`worldrt api serve NAME`: a vendor's API served on worldrt, so the vendor's own SDK runs against it."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from worldrt.host.cli._common import CliError, Commands, Parents, session

if TYPE_CHECKING:
    from worldrt.host.api import HttpLimits


def http_limits(args: argparse.Namespace) -> HttpLimits:
    """The bounds the flags of ``add_http_limits`` name, each left at its default when not given."""
    from worldrt.host.api import HttpLimits

    given = {name: getattr(args, name) for name in _LIMIT_FLAGS if getattr(args, name) is not None}
    return HttpLimits(**given)


_LIMIT_FLAGS = ("max_body_bytes", "header_timeout_s", "max_connections", "max_host_calls", "calls_per_instance")


def add_http_limits(parser: argparse.ArgumentParser) -> None:
    """The flags every ``api serve`` command takes for its HTTP bounds (``HttpLimits``)."""
    limits = parser.add_argument_group("limits (each refused at once: 413, a closed connection, 503 or 429)")
    limits.add_argument("--max-body-bytes", type=int, metavar="N",
                        help="the largest request body (default 4194304, the host's own gRPC message cap)")
    limits.add_argument("--header-timeout-s", type=float, metavar="S",
                        help="a connection that has not sent complete request headers within S is closed (default 10)")
    limits.add_argument("--max-connections", type=int, metavar="N",
                        help="open connections at most; one more gets 503 (default 4096)")
    limits.add_argument("--max-host-calls", type=int, metavar="N",
                        help="calls waiting on the host at once, each on a thread; one more gets 503 (default 64)")
    limits.add_argument("--calls-per-instance", type=int, metavar="N",
                        help="calls running on one instance at once (16 more may wait their turn; one more gets "
                             "429; default 4)")


def api_serve_morph(args: argparse.Namespace) -> int:
    from worldrt.host.api import DEFAULT_LISTEN, parse_listen, serve_morph_api

    api_key = args.api_key or os.environ.get("MORPH_API_KEY", "")
    if not api_key:
        raise CliError("the Morph API needs the key its clients send: --api-key KEY or MORPH_API_KEY")
    listen = args.listen or DEFAULT_LISTEN
    parse_listen(listen)
    limits = http_limits(args)
    from worldrt import telemetry

    telemetry.setup("api", "worldrt-api", args)
    with session(args) as host:
        serve_morph_api(host, listen, api_key, exec_timeout_ms=args.exec_timeout_ms, max_branches=args.max_branches,
                        limits=limits)
    return 0


def add_commands(commands: Commands, parents: Parents) -> None:
    api = commands.add_parser("api", help="vendor APIs served on worldrt").add_subparsers(dest="action", required=True)
    serve = api.add_parser("serve", help="serve a vendor's API until SIGTERM").add_subparsers(dest="vendor",
                                                                                            required=True)
    morph = serve.add_parser(
        "morph", parents=[parents.common], help="Morph Cloud's REST API at http://LISTEN/api",
        description="Serve Morph Cloud's REST API (as the morphcloud SDK speaks it) at http://LISTEN/api, through "
                    "the running host (else an embedded one): calls go over the generator link of 'morph-api' "
                    "(made to morph if missing) and are recorded in the registry. Point the SDK at it with "
                    "MORPH_BASE_URL=http://LISTEN/api and the same MORPH_API_KEY.")
    morph.add_argument("--listen", metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8780)")
    morph.add_argument("--api-key", metavar="KEY",
                       help="the key clients must send as 'Authorization: Bearer KEY' (default $MORPH_API_KEY; "
                            "prefer the variable: a flag is readable in /proc/PID/cmdline)")
    morph.add_argument("--exec-timeout-ms", type=int, metavar="MS",
                       help="how long one exec may run (default 300000; the SDK sends no timeout)")
    morph.add_argument("--max-branches", type=int, metavar="N", help="the largest branch count (default 256)")
    add_http_limits(morph)
    from worldrt.telemetry import add_telemetry_arguments

    add_telemetry_arguments(morph)
    morph.set_defaults(func=api_serve_morph)
