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


def api_serve_modal(args: argparse.Namespace) -> int:
    try:
        from worldrt.host.api.modal import DEFAULT_LISTEN, parse_listen, profile, serve_modal_api
    except ImportError as exc:
        raise CliError(str(exc)) from None

    token_id, token_secret = os.environ.get("MODAL_TOKEN_ID", ""), os.environ.get("MODAL_TOKEN_SECRET", "")
    if not token_id or not token_secret:
        raise CliError("the Modal API needs the token pair its clients send: set MODAL_TOKEN_ID and "
                       "MODAL_TOKEN_SECRET in the server's environment (never on the command line)")
    listen = args.listen or DEFAULT_LISTEN
    parse_listen(listen)
    if args.print_profile:
        print(profile(listen, token_id, token_secret), end="")
        return 0
    limits = http_limits(args)
    from worldrt import telemetry

    telemetry.setup("api", "worldrt-api", args)
    with session(args) as host:
        serve_modal_api(host, listen, token_id, token_secret, limits=limits)
    return 0


def api_serve_e2b(args: argparse.Namespace) -> int:
    try:
        from worldrt.host.api.e2b import DEFAULT_LISTEN, parse_listen, serve_e2b_api
    except ImportError as exc:
        raise CliError(f"the E2B API needs the e2b SDK's server classes: pip install 'world-runtime[e2b]' ({exc})") from None

    api_key = os.environ.get("E2B_API_KEY", "")
    if not api_key:
        raise CliError("the E2B API needs the key its clients send: set E2B_API_KEY in the server's environment")
    listen = args.listen or DEFAULT_LISTEN
    parse_listen(listen)
    limits = http_limits(args)
    from worldrt import telemetry

    telemetry.setup("api", "worldrt-api", args)
    with session(args) as host:
        serve_e2b_api(host, listen, api_key, limits=limits)
    return 0


def add_commands(commands: Commands, parents: Parents) -> None:
    from worldrt.telemetry import add_telemetry_arguments

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
    add_telemetry_arguments(morph)
    morph.set_defaults(func=api_serve_morph)

    modal = serve.add_parser(
        "modal", parents=[parents.common], help="Modal's gRPC API (control plane and task router) at http://LISTEN",
        description="Serve Modal's API (modal.client.ModalClient and the task command router, as the modal SDK "
                    "speaks them) on one loopback h2c port, through the running host (else an embedded one): "
                    "sandboxes are instances of the modal provider, over the generator link of 'modal-api' (made "
                    "to modal if missing), and every call is recorded in the registry. The token pair comes from "
                    "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET in this environment. Point the SDK at it with "
                    "MODAL_SERVER_URL=http://LISTEN and the same pair, or the profile --print-profile prints. "
                    "Needs the extra: pip install 'world-runtime[modal]'.")
    modal.add_argument("--listen", metavar="HOST:PORT", help="where to listen, on loopback (default 127.0.0.1:8790)")
    modal.add_argument("--print-profile", action="store_true",
                       help="print a ~/.modal.toml profile for this server and its token pair, and exit")
    add_http_limits(modal)
    add_telemetry_arguments(modal)
    modal.set_defaults(func=api_serve_modal)

    e2b = serve.add_parser(
        "e2b", parents=[parents.common], help="E2B's API (control plane, envd, code interpreter) at http://LISTEN",
        description="Serve E2B's API as the e2b and e2b-code-interpreter SDKs speak it, on one plain HTTP/1.1 port, "
                    "through the running host (else an embedded one): calls go over the generator link of 'e2b-api' "
                    "(made to morph if missing) and are recorded. The key is $E2B_API_KEY. Point the SDK at it with "
                    "E2B_API_URL=http://LISTEN, E2B_SANDBOX_URL=http://LISTEN and the same E2B_API_KEY. Needs "
                    "world-runtime[e2b].")
    e2b.add_argument("--listen", metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8791; loopback only)")
    add_http_limits(e2b)
    add_telemetry_arguments(e2b)
    e2b.set_defaults(func=api_serve_e2b)
