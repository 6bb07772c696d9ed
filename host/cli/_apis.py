"""`worldrt api serve NAME`: a vendor's API served on worldrt, so the vendor's own SDK runs against it."""

from __future__ import annotations

import argparse
import logging
import os

from worldrt.host.cli._common import CliError, Commands, Parents, session


def api_serve_morph(args: argparse.Namespace) -> int:
    from worldrt.host.api import DEFAULT_LISTEN, parse_listen, serve_morph_api

    api_key = args.api_key or os.environ.get("MORPH_API_KEY", "")
    if not api_key:
        raise CliError("the Morph API needs the key its clients send: --api-key KEY or MORPH_API_KEY")
    listen = args.listen or DEFAULT_LISTEN
    parse_listen(listen)
    logging.basicConfig(level=os.environ.get("WORLDRT_LOG", "INFO"),
                        format="%(asctime)s api[%(process)d] %(levelname)s %(message)s")
    with session(args) as host:
        serve_morph_api(host, listen, api_key, exec_timeout_ms=args.exec_timeout_ms, max_branches=args.max_branches)
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
    morph.set_defaults(func=api_serve_morph)
