"""`worldrt host serve` and `worldrt tls init`: serving the host and making its certificates."""

from __future__ import annotations

import argparse
from pathlib import Path

from worldrt.host.cli._common import CliError, Commands, Parents, console, emit, home


def host_serve(args: argparse.Namespace) -> int:
    from worldrt import telemetry
    from worldrt.host import (
        DEFAULT_CALLS,
        HOST_TOKEN_FILE,
        Host,
        ServiceLimits,
        default_db,
        default_host_address,
        serve_host,
    )
    from worldrt.providers import (
        ServerTls,
        ensure_token_file,
        listen_address,
        private_dir,
        token_from,
    )

    telemetry.setup("host", "worldrt-host", args)
    state = private_dir(home(args))
    token = token_from(args.token_file) or ensure_token_file(state / HOST_TOKEN_FILE)
    tls = ServerTls.from_args(args.tls_cert, args.tls_key, args.tls_client_ca)
    listen = listen_address(args.listen or default_host_address(state), tls=tls, token=token)
    if args.output_cap is not None and args.output_cap < 0:
        raise CliError(f"--output-cap must be 0 bytes or more, got {args.output_cap}")
    from worldrt.host.cli._lattice import lattice_host

    for flag, value in (("--max-calls", args.max_calls), ("--max-components", args.max_components)):
        if value is not None and value < 1:
            raise CliError(f"{flag} must be 1 or more, got {value}")
    if args.component_timeout is not None and args.component_timeout <= 0:
        raise CliError(f"--component-timeout must be more than 0 seconds, got {args.component_timeout:g}")
    db = Path(args.db) if args.db else default_db()
    host = lattice_host(args, db, state) or Host(db, state, keep_days=args.keep_days, output_cap=args.output_cap)
    try:
        host.limit_components(args.max_components, args.component_timeout)
    except BaseException:
        host.close()
        raise
    serve_host(host, listen, token, tls=tls, limits=ServiceLimits(host.max_components, args.max_calls or DEFAULT_CALLS))
    return 0


def tls_init(args: argparse.Namespace) -> int:
    from worldrt.host.routing import init_tls

    issued = init_tls(Path(args.dir), args.hosts, args.ip)
    data = {"ca": str(issued.ca_cert), "ca_key": str(issued.ca_key), "ca_made": issued.ca_made,
            "hosts": {name: {"cert": str(c), "key": str(k), "names": sans}
                      for name, (c, k, sans) in issued.hosts.items()}}

    def render() -> None:
        console.print(f"{'made' if issued.ca_made else 'reused'} CA {issued.ca_cert} (key {issued.ca_key}, 0600)")
        for name, (cert, key, sans) in issued.hosts.items():
            console.print(f"{name}: {cert} and {key} (0600), for {', '.join(sans)}")
        console.print(f"serve with --tls-cert NAME.pem --tls-key NAME.key [--tls-client-ca {issued.ca_cert}]; "
                      f"clients use --tls-ca {issued.ca_cert} (WORLDRT_TLS_CA)")

    emit(args, data, render)
    return 0


def add_commands(commands: Commands, parents: Parents) -> None:
    host = commands.add_parser("host", help="the host").add_subparsers(dest="action", required=True)
    serve_parser = host.add_parser(
        "serve", parents=[parents.base, parents.serving], help="serve worldrt.v1.Host until SIGTERM",
        description="Serve worldrt.v1.Host. Clients need its bearer token: --token-file, else $WORLDRT_TOKEN, "
                    "else HOME/host.token (made, mode 0600, on the first start and reused).")
    serve_parser.add_argument("--listen", help="unix:PATH or HOST:PORT (default unix:HOME/host.sock); a HOST:PORT off "
                                             "loopback needs TLS")
    serve_parser.add_argument("--keep-days", type=float, metavar="N",
                            help="prune provider_invocations rows older than N days, at start and then hourly "
                                 "(default $WORLDRT_KEEP_DAYS; unset keeps every row; runs, links and providers "
                                 "are never pruned)")
    serve_parser.add_argument("--output-cap", type=int, metavar="BYTES",
                            help="bytes of stdout, stderr and code each stored invocation row keeps, with the full "
                                 "size beside them (default $WORLDRT_OUTPUT_CAP or 4096)")
    serve_parser.add_argument("--max-components", type=int, metavar="N",
                              help="component invocations (Invoke, verse runs) running at once; more are refused "
                                   "as busy (default $WORLDRT_MAX_COMPONENTS or 8)")
    serve_parser.add_argument("--component-timeout", type=float, metavar="S",
                              help="seconds one component invocation may run, its provider calls included "
                                   "(default $WORLDRT_COMPONENT_TIMEOUT_S or 120)")
    serve_parser.add_argument("--max-calls", type=int, metavar="N",
                              help="other calls running at once (provider calls, files, images, reads); more are "
                                   "refused as busy (default 64); health is answered apart from them")
    from worldrt.host.cli._lattice import add_host_flags

    add_host_flags(serve_parser)
    from worldrt.telemetry import add_telemetry_arguments

    add_telemetry_arguments(serve_parser)
    serve_parser.set_defaults(func=host_serve)

    tls = commands.add_parser("tls", help="certificates for TLS").add_subparsers(dest="action", required=True)
    init_parser = tls.add_parser("init", parents=[parents.base], help="a local CA and a certificate and key per host",
                              description="Make DIR/ca.pem and ca.key (or reuse them) and, per host NAME, NAME.pem "
                                          "and NAME.key (0600), for server and client authentication.")
    init_parser.add_argument("dir", metavar="DIR")
    init_parser.add_argument("--host", dest="hosts", action="append", required=True, metavar="NAME[,NAME...]",
                          help="host names (repeatable): one certificate each, valid for that DNS name")
    init_parser.add_argument("--ip", action="extend", nargs="+", default=[], metavar="[NAME=]ADDR",
                          help="IP addresses every certificate is valid for (NAME=ADDR: that host's only)")
    init_parser.set_defaults(func=tls_init)

