"""`worldrt lattice creds init|serve|status` and `worldrt registry serve`, the lattice flags every
lattice-using command takes, and the lattice side of `worldrt link`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worldrt.host.cli._common import CliError, Commands, Parents, console, emit, home, table

if TYPE_CHECKING:
    from worldrt.host.lattice import Lattice, LatticeOptions


def add_lattice_flags(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    group = parser.add_argument_group("lattice")
    group.add_argument("--lattice", metavar="nats://HOST:PORT", required=required and not os.environ.get("WORLDRT_LATTICE"),
                       help="the lattice's NATS server (default $WORLDRT_LATTICE)")
    group.add_argument("--lattice-name", metavar="NAME", help="the lattice's name (default $WORLDRT_LATTICE_NAME or default)")
    group.add_argument("--lattice-token-file", metavar="PATH",
                       help="the lattice's token, in a file only you can read (default $WORLDRT_LATTICE_TOKEN)")
    group.add_argument("--lattice-user", metavar="USER", help="log in with this user (default $WORLDRT_LATTICE_USER) ...")
    group.add_argument("--lattice-password-file", metavar="PATH",
                       help="... and the password in this file (default $WORLDRT_LATTICE_PASSWORD)")
    group.add_argument("--lattice-creds", metavar="PATH",
                       help="this machine's lattice identity, a file of worldrt lattice creds init (default "
                            "$WORLDRT_LATTICE_CREDS)")
    group.add_argument("--lattice-tls-ca", metavar="PEM",
                       help="CA of the lattice server's TLS certificate (default $WORLDRT_LATTICE_TLS_CA)")
    group.add_argument("--lattice-tls-cert", metavar="PEM",
                       help="a client certificate, for a server that requires one (default $WORLDRT_LATTICE_TLS_CERT)")
    group.add_argument("--lattice-tls-key", metavar="PEM", help="its key (default $WORLDRT_LATTICE_TLS_KEY)")


def lattice_options(args: argparse.Namespace) -> LatticeOptions | None:
    from worldrt.host.lattice import LatticeOptions

    return LatticeOptions.from_args(getattr(args, "lattice", None), getattr(args, "lattice_name", None),
                                    token_file=getattr(args, "lattice_token_file", None),
                                    user=getattr(args, "lattice_user", None),
                                    password_file=getattr(args, "lattice_password_file", None),
                                    tls_ca=getattr(args, "lattice_tls_ca", None),
                                    creds_file=getattr(args, "lattice_creds", None),
                                    tls_cert=getattr(args, "lattice_tls_cert", None),
                                    tls_key=getattr(args, "lattice_tls_key", None))


def connect(args: argparse.Namespace, client: str, *, roles: tuple[str, ...] = ()) -> Lattice:
    """A connection to the lattice the flags name; ``roles``: the identities that may do what follows."""
    from worldrt.host.lattice import Lattice

    options = lattice_options(args)
    if options is None:
        raise CliError("name the lattice: --lattice nats://HOST:PORT (or WORLDRT_LATTICE)")
    if roles and options.role is not None and options.role not in roles:
        raise CliError(f"the lattice credential {options.creds.path if options.creds else ''} is {options.role} "
                       f"{options.identity!r}'s, and this needs {' or '.join(roles)}'s: pass --lattice-creds "
                       f"DIR/{'admin' if 'admin' in roles else roles[0]}.cred (the server would refuse it anyway)")
    return Lattice(options, client_name=client)


def default_host_id() -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:48]
    return name or "host"


def _logging(kind: str, args: argparse.Namespace) -> None:
    """Logs, traces and metrics of the ``kind`` daemon as its flags ask (worldrt.telemetry)."""
    from worldrt import telemetry

    telemetry.setup(kind, f"worldrt-{kind}", args)


# lattice serve ------------------------------------------------------------------------------------------
def lattice_serve(args: argparse.Namespace) -> int:
    from worldrt.host.lattice import PASSWORD_ENV, TOKEN_ENV, NatsServer, ServerConfig

    _logging("lattice", args)
    log = logging.getLogger("worldrt.lattice")

    def secret(path: str | None, env: str) -> str | None:
        if path:
            try:
                return Path(path).read_text().strip() or None
            except OSError as exc:
                raise CliError(f"cannot read {path}: {exc.strerror}") from None
        return os.environ.get(env) or None

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("TLS needs both --tls-cert and --tls-key")
    creds = Path(args.creds) if args.creds else None
    config = ServerConfig(listen=args.listen, store=Path(args.store) if args.store else home(args) / "lattice",
                          token=None if creds else secret(args.token_file, TOKEN_ENV), user=args.user,
                          password=secret(args.password_file, PASSWORD_ENV) if args.user else None,
                          tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_client_ca,
                          max_payload=args.max_payload, creds=creds)
    config.check()
    server = NatsServer(config)
    restarts = 0
    try:
        server.wait_ready()
        scheme = "tls" if args.tls_cert else "nats"
        if creds is not None:
            _make_lattice(config, f"{scheme}://{args.listen}")
        log.info("lattice serving on %s://%s (store %s, %s)", scheme, args.listen, config.store,
                 f"identities of {creds}" if creds else "token" if config.token else
                 "user and password" if config.user else "no credentials")
        print(f"lattice serving on {scheme}://{args.listen}", flush=True)
        while True:
            code = server.proc.wait()
            restarts += 1
            if restarts > 5:
                raise CliError(f"nats-server exited with {code} {restarts} times; see {server.log_path}")
            log.warning("nats-server exited with %s; restarting it (restart %d)", code, restarts)
            time.sleep(min(0.2 * 2 ** restarts, 5.0))
            server = NatsServer(config)
            server.wait_ready()
    except KeyboardInterrupt:
        server.stop()
        log.info("lattice stopped")
        return 0
    finally:
        server.stop()


def _make_lattice(config: Any, url: str) -> None:
    """As the lattice's admin, make its buckets and its record streams before any host joins (hosts may
    not make them)."""
    from urllib.parse import urlsplit

    from worldrt.host.lattice import ADMIN, Lattice, LatticeOptions, ensure_streams, load_credential, make_buckets, read_public

    admin = load_credential(config.creds / f"{ADMIN}.cred")
    lattice_name = read_public(config.creds)["lattice"]
    parts = urlsplit(url)
    host = "127.0.0.1" if parts.hostname in ("0.0.0.0", "", None) else parts.hostname
    own = f"{parts.scheme}://{'[' + host + ']' if ':' in host else host}:{parts.port}"
    options = LatticeOptions(own, lattice_name, creds=admin, tls_pin=config.tls_cert,
                             tls_cert=config.tls_cert if config.tls_ca else None,
                             tls_key=config.tls_key if config.tls_ca else None)
    lattice = Lattice(options, client_name="worldrt-lattice-serve")
    try:
        async def make() -> None:
            await make_buckets(lattice)
            await ensure_streams(lattice, manage=True)

        lattice.run(make(), timeout_s=30)
    finally:
        lattice.close()


def creds_init(args: argparse.Namespace) -> int:
    from worldrt.host.lattice import HOST, init_creds

    made = init_creds(Path(args.dir), args.hosts, args.serves, args.lattice_name or "default")
    data = {"lattice": made.lattice, "public": str(made.public), "made": made.new,
            "identities": {name: {"role": e["role"], "nkey": e["nkey"], "credential": str(made.path(name)),
                                  **({"serves": e.get("serves", [])} if e["role"] == HOST else {})}
                           for name, e in sorted(made.identities.items())}}

    def render() -> None:
        console.print(table(f"identities of lattice {made.lattice} ({made.public}: public keys, for lattice serve)",
                            ["identity", "role", "serves", "credential (0600, that machine only)", "new"],
                            [[name, e["role"], ", ".join(e.get("serves") or []) if e["role"] == HOST else "",
                              made.path(name), "yes" if name in made.new else ""]
                             for name, e in sorted(made.identities.items())]))
        console.print(f"serve with: worldrt lattice serve --creds {args.dir} --tls-cert PEM --tls-key KEY; on each "
                      f"machine: --lattice-creds NAME.cred (WORLDRT_LATTICE_CREDS), with only its own file")

    emit(args, data, render)
    return 0


# lattice status -----------------------------------------------------------------------------------------
def status_of(lattice: Lattice) -> dict[str, Any]:
    from worldrt.host.lattice import bucket_values, fresh, hosts_bucket, list_links, providers_bucket

    async def gather() -> dict[str, Any]:
        hosts = [json.loads(v) for v in (await bucket_values(lattice, hosts_bucket(lattice.name))).values()]
        replicas = [json.loads(v) for v in (await bucket_values(lattice, providers_bucket(lattice.name))).values()]
        links = await list_links(lattice)
        return {"hosts": hosts, "replicas": replicas, "links": links}

    data = lattice.run(gather(), timeout_s=20)
    providers: dict[str, list[dict[str, Any]]] = {}
    for replica in data["replicas"]:
        replica["healthy"] = bool(replica.get("healthy")) and fresh(replica)
        providers.setdefault(replica["provider"], []).append(replica)
    for host in data["hosts"]:
        host["fresh"] = fresh(host)
    return {"lattice": lattice.name, "url": lattice.options.url,
            "hosts": sorted(data["hosts"], key=lambda h: h["host_id"]),
            "providers": {name: sorted(rs, key=lambda r: r["replica"]) for name, rs in sorted(providers.items())},
            "links": sorted(data["links"], key=lambda link: link["link_id"])}


def lattice_status(args: argparse.Namespace) -> int:
    lattice = connect(args, "worldrt-status", roles=("admin", "host"))
    try:
        data = status_of(lattice)
    finally:
        lattice.close()

    def render() -> None:
        console.print(table(f"hosts of lattice {data['lattice']} at {data['url']}", ["host", "providers", "pid", "alive"],
                            [[h["host_id"], ", ".join(h.get("providers") or []) or "(caller)", h.get("pid"),
                              "yes" if h["fresh"] else "stale"] for h in data["hosts"]]))
        console.print(table("providers", ["provider", "replica", "healthy", "restarts", "last error"],
                            [[name, r["replica"], "yes" if r["healthy"] else "no", r.get("restarts", 0),
                              r.get("last_error") or ""] for name, rs in data["providers"].items() for r in rs]))
        console.print(table("links", ["link", "source", "interfaces", "name", "provider", "secrets"],
                            [[x["link_id"], x["source_component"], ", ".join(x["interfaces"]), x["name"],
                              x["target_provider"], ", ".join(sorted(x.get("secret_keys") or {}))]
                             for x in data["links"]]))

    emit(args, data, render)
    return 0


# registry serve -----------------------------------------------------------------------------------------
def registry_serve(args: argparse.Namespace) -> int:
    from worldrt.host import HOST_TOKEN_FILE, Host, default_db, default_host_address, serve_host
    from worldrt.host.lattice import Ingest, StreamLimits
    from worldrt.providers import ensure_token_file, private_dir, token_from

    _logging("registry", args)
    state = private_dir(home(args))
    token = token_from(args.token_file) or ensure_token_file(state / HOST_TOKEN_FILE)
    lattice = connect(args, "worldrt-registry", roles=("registry", "admin"))

    class RegistryHost(Host):
        """A host that runs no provider: it writes the lattice's rows and answers reads of its tables."""

        def close(self) -> None:
            ingest.stop()
            super().close()
            lattice.close()

    try:
        host = RegistryHost(Path(args.db) if args.db else default_db(), state)
    except BaseException:
        lattice.close(drain=False)
        raise
    try:
        ingest = Ingest(lattice, host.registry, StreamLimits(max_bytes=args.stream_max_bytes,
                                                             max_msgs=args.stream_max_msgs),
                        redeliver_after_s=args.redeliver_after)
    except BaseException:
        Host.close(host)
        lattice.close(drain=False)
        raise
    logging.getLogger("worldrt.registry").info("registry %s consuming lattice %s", host.registry.path, lattice.name)
    serve_host(host, args.listen or default_host_address(state), token)
    return 0


# link put|del|list --lattice ----------------------------------------------------------------------------
def link_put(args: argparse.Namespace, link_pb: Any, secret_paths: dict[str, str]) -> Any:
    from worldrt.host.lattice import put_link
    from worldrt.host.routing import HostLink, LinkTable
    from worldrt.providers import CATALOG
    from worldrt.v1 import pb

    link = HostLink.from_pb(link_pb)
    LinkTable.validate(link, set(CATALOG))
    lattice = connect(args, "worldrt-link", roles=("admin",))
    try:
        existed = lattice.run(put_link(lattice, link, secret_paths), timeout_s=15)
    finally:
        lattice.close()
    return pb.LinkReply(link_id=link.link_id, existed=existed)


def link_del(args: argparse.Namespace, link_id: str) -> Any:
    from worldrt.host.lattice import delete_link
    from worldrt.v1 import pb

    lattice = connect(args, "worldrt-link", roles=("admin",))
    try:
        existed = lattice.run(delete_link(lattice, link_id), timeout_s=15)
    finally:
        lattice.close()
    return pb.LinkReply(link_id=link_id, existed=existed)


def link_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    from worldrt.host.lattice import list_links

    lattice = connect(args, "worldrt-link", roles=("admin", "host"))
    try:
        return sorted(lattice.run(list_links(lattice), timeout_s=15), key=lambda link: link["link_id"])
    finally:
        lattice.close()


def add_commands(commands: Commands, parents: Parents) -> None:
    lattice = commands.add_parser("lattice", help="many machines: the NATS lattice").add_subparsers(
        dest="action", required=True)
    creds = lattice.add_parser("creds", help="the lattice's identities").add_subparsers(dest="creds_action",
                                                                                           required=True)
    cinit = creds.add_parser("init", parents=[parents.base], help="an nkey identity per host, the registry and admin",
                             description="Make DIR/lattice.json (public keys and permissions, for lattice serve "
                                         "--creds DIR) and, per identity, DIR/NAME.cred (0600: its seed; copy each "
                                         "host's to that host only). Run again to add hosts or change what they "
                                         "serve: existing identities keep their keys.")
    cinit.add_argument("dir", metavar="DIR")
    cinit.add_argument("--host", dest="hosts", action="append", default=[], metavar="ID[,ID...]",
                       help="host ids (repeatable): each gets an identity that only that host's id may use")
    cinit.add_argument("--serves", action="append", default=[], metavar="ID=PROVIDER[,PROVIDER...]",
                       help="the providers host ID may serve to the lattice (repeatable; default none: it only calls)")
    cinit.add_argument("--lattice-name", metavar="NAME", help="the lattice's name (default default)")
    cinit.set_defaults(func=creds_init)

    serve = lattice.add_parser("serve", parents=[parents.base], help="run a JetStream nats-server until SIGTERM",
                               description="Run nats-server (JetStream on) as a supervised child. Off loopback it "
                                           "needs --creds DIR (from worldrt lattice creds init) and TLS, and refuses "
                                           "to start otherwise. On loopback, an older single credential also works: "
                                           "--token-file or $WORLDRT_LATTICE_TOKEN, or --user with --password-file "
                                           "or $WORLDRT_LATTICE_PASSWORD; never on the command line.")
    serve.add_argument("--listen", default="127.0.0.1:4222", metavar="HOST:PORT", help="default 127.0.0.1:4222")
    serve.add_argument("--creds", metavar="DIR",
                       help="serve the identities and permissions of worldrt lattice creds init DIR")
    serve.add_argument("--store", metavar="DIR", help="JetStream's files and the server's config (default HOME/lattice)")
    serve.add_argument("--token-file", metavar="PATH",
                       help="loopback only: require this token (default $WORLDRT_LATTICE_TOKEN)")
    serve.add_argument("--token", type=_no_token_flag, help=argparse.SUPPRESS)
    serve.add_argument("--user", help="require this user ...")
    serve.add_argument("--password-file", metavar="PATH", help="... with the password in this file")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate ...")
    serve.add_argument("--tls-key", metavar="PEM", help="... and its key")
    serve.add_argument("--tls-client-ca", metavar="PEM", help="require client certificates signed by this CA")
    serve.add_argument("--max-payload", type=int, metavar="BYTES", help="largest message (nats-server default 1 MiB)")
    from worldrt.telemetry import add_telemetry_arguments

    add_telemetry_arguments(serve)
    serve.set_defaults(func=lattice_serve)
    status = lattice.add_parser("status", parents=[parents.base], help="hosts, providers and links of the lattice")
    add_lattice_flags(status, required=True)
    status.set_defaults(func=lattice_status)

    registry = commands.add_parser("registry", help="the lattice's one registry").add_subparsers(
        dest="action", required=True)
    rserve = registry.add_parser("serve", parents=[parents.base, parents.serving],
                                 help="write every host's rows from the lattice into one DuckDB file",
                                 description="Consume the lattice's invocation and run streams into the DuckDB "
                                             "file (--db, default .worldrt/world.duckdb) and serve its reads at "
                                             "unix:HOME/host.sock, so `worldrt invocations`, `analytics` and "
                                             "`audit gf3` in HOME read it.")
    rserve.add_argument("--listen", help="where its reads are served (default unix:HOME/host.sock)")
    rserve.add_argument("--stream-max-bytes", type=int, default=1 << 30, metavar="BYTES",
                        help="records not yet written that each record stream holds at most (default 1 GiB); a "
                             "full stream refuses new ones, which wait in their host's outbox")
    rserve.add_argument("--stream-max-msgs", type=int, default=1_000_000, metavar="N",
                        help="... and at most this many (default 1,000,000)")
    rserve.add_argument("--redeliver-after", type=_seconds, default=30.0, metavar="S",
                        help="records handed to a registry that dies before writing them are handed out again "
                             "after S seconds (default 30); a live registry slower than S is handed them twice "
                             "and skips the second")
    add_lattice_flags(rserve, required=True)
    add_telemetry_arguments(rserve)
    rserve.set_defaults(func=registry_serve)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 86400:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds between 0 and 86400")
    return seconds


def _no_token_flag(value: str) -> str:
    raise argparse.ArgumentTypeError(
        "a token on the command line is readable by anyone in /proc/PID/cmdline; put it in WORLDRT_LATTICE_TOKEN "
        "or in a file only you can read, passed with --token-file PATH")


def add_host_flags(serve: argparse.ArgumentParser) -> None:
    """`host serve`'s lattice flags."""
    add_lattice_flags(serve)
    serve.add_argument("--host-id", metavar="ID",
                       help="this host's id on the lattice (default: its credential's, else the machine's name)")
    serve.add_argument("--providers", metavar="NAME[,NAME...]", default="",
                       help="with --lattice: the local providers this host runs and serves to the lattice "
                            "(default none: a host that only calls)")


def lattice_host(args: argparse.Namespace, db: Path | None, state: Path) -> Any:
    """The host on the lattice the flags ask for, or None without --lattice."""
    from worldrt.host import Host

    options = lattice_options(args)
    providers = [p.strip() for p in (args.providers or "").split(",") if p.strip()]
    if options is None:
        if providers or args.host_id:
            raise CliError("--providers and --host-id need --lattice nats://HOST:PORT")
        return None
    host_id = args.host_id or options.identity or default_host_id()
    return Host(db, state, lattice=options, host_id=host_id, providers=providers,
                       keep_days=args.keep_days, output_cap=args.output_cap)
