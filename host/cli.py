"""The ``worldrt`` command line. Every command that prints data takes ``--json``; errors are one line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
import grpc
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


class CliError(Exception):
    """A failure to report as one line and exit non-zero."""


def _home(args: argparse.Namespace) -> Path:
    from ._host import default_home

    return Path(args.home) if args.home else default_home()


def _session(args: argparse.Namespace):  # noqa: ANN202 - returns the Session context manager
    from ._client import Session
    from ._host import default_db
    from ._service import default_host_address

    home = _home(args)
    address = args.host or os.environ.get("WORLDRT_HOST") or default_host_address(home)
    return Session(address, Path(args.db) if args.db else default_db(), home)


def _as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _emit(args: argparse.Namespace, data: Any, render: Callable[[], None]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        render()


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


# providers ---------------------------------------------------------------------------------------
def _providers_list(args: argparse.Namespace) -> int:
    with _session(args) as host:
        reply = host.list_providers()
    rows = [_as_dict(p) for p in reply.providers]
    total = sum(p.trit for p in reply.providers)

    def render() -> None:
        console.print(_table("providers", ["provider", "name", "trit", "status", "address", "restarts"],
                             [[p.provider_id, p.name, f"{p.trit:+d}", p.status, p.address or "-", p.restarts]
                              for p in reply.providers]))
        console.print(f"GF(3): sum of trits {total:+d} ≡ {total % 3} (mod 3)"
                      + (" balanced" if total % 3 == 0 else " unbalanced"))

    _emit(args, {"providers": rows, "trit_sum": total, "gf3_balanced": total % 3 == 0}, render)
    return 0


def _provider_status(args: argparse.Namespace) -> int:
    with _session(args) as host:
        state = host.provider_status(args.name)
    data = _as_dict(state)

    def render() -> None:
        caps = state.capabilities
        console.print(_table(f"provider {state.provider_id}", ["field", "value"], [
            ["name", state.name], ["trit", f"{state.trit:+d}"], ["status", state.status],
            ["address", state.address], ["pid", state.pid], ["restarts", state.restarts],
            ["languages", ", ".join(caps.languages)], ["operations", ", ".join(caps.operations)],
            *[[c.name, c.value_json] for c in caps.capabilities]]))

    _emit(args, data, render)
    return 0


def _provider_serve(args: argparse.Namespace) -> int:
    from worldrt.providers._daemon import default_state_dir, run

    values = dict(_key_value(item) for item in args.set)
    run(args.name, args.listen, args.token or os.environ.get("WORLDRT_TOKEN") or None,
        Path(args.state_dir) if args.state_dir else default_state_dir(), values)
    return 0


# links -------------------------------------------------------------------------------------------
def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise CliError(f"expected KEY=VALUE, got {item!r}")
    return key, value


def _link_put(args: argparse.Namespace) -> int:
    from worldrt.v1 import pb

    interface, provider = _key_value(args.binding)
    link = pb.LinkConfig(link_id=args.id or "", source_component=args.source, name=args.name,
                         interfaces=[interface], target_provider=provider,
                         values=dict(_key_value(v) for v in args.set))
    with _session(args) as host:
        reply = host.put_link(link)
    _emit(args, _as_dict(reply), lambda: console.print(
        f"{'replaced' if reply.existed else 'put'} link {reply.link_id}: {interface} → {provider}"))
    return 0


def _link_del(args: argparse.Namespace) -> int:
    from worldrt.v1 import pb

    from ._links import HostLink

    link_id = args.link if "/" in args.link else HostLink.default_id(args.source, args.link, args.name)
    with _session(args) as host:
        reply = host.delete_link(pb.LinkConfig(link_id=link_id))
    if not reply.existed:
        raise CliError(f"no link {link_id!r}; see: worldrt link list")
    _emit(args, _as_dict(reply), lambda: console.print(f"deleted link {link_id}"))
    return 0


def _link_list(args: argparse.Namespace) -> int:
    with _session(args) as host:
        reply = host.list_links()
    _emit(args, {"links": [_as_dict(link) for link in reply.links]}, lambda: console.print(_table(
        "links", ["link", "source", "interfaces", "name", "provider"],
        [[x.link_id, x.source_component, ", ".join(x.interfaces), x.name, x.target_provider] for x in reply.links])))
    return 0


# components --------------------------------------------------------------------------------------
def _component_build(args: argparse.Namespace) -> int:
    from ._toolchain import build_component

    with console.status(f"building {args.dir} with componentize-py"):
        result = build_component(args.dir, args.output)
    data = {"path": str(result.path), "size_bytes": result.size_bytes, "seconds": round(result.seconds, 2)}
    _emit(args, data, lambda: console.print(
        f"built {result.path} ({result.size_bytes / 2**20:.1f} MiB) in {result.seconds:.1f} s"))
    return 0


def _component_inspect(args: argparse.Namespace) -> int:
    from ._toolchain import inspect_component

    info = inspect_component(args.file, cache_dir=_home(args) / "cache" / "components")
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(info).items()}

    def render() -> None:
        rows = [["import", name, "; ".join(f"{f}: {sig}" for f, sig in funcs.items())]
                for name, funcs in info.imports.items()]
        rows += [["export", name, sig] for name, sig in info.exports.items()]
        console.print(_table(f"{info.path} ({info.size_bytes} bytes, sha256 {info.digest[:12]})",
                             ["kind", "name", "functions"], rows))
        if info.problem:
            console.print(f"[yellow]does not fit the verse world:[/yellow] {info.problem}")

    _emit(args, data, render)
    return 0 if info.problem is None else 1


def _component_run(args: argparse.Namespace) -> int:
    from worldrt.v1 import host_pb, pb

    links = [_key_value(item) for item in args.link]
    with _session(args) as host:
        info = host.load_component(host_pb.LoadComponentRequest(path=args.file))
        for interface, provider in links:
            host.put_link(pb.LinkConfig(source_component=info.name, interfaces=[interface],
                                        target_provider=provider))
        calls: list[dict[str, Any]] = []

        def on_event(event: host_pb.InvokeEvent) -> None:
            if event.HasField("call"):
                calls.append(_as_dict(event.call))
                if not args.json:
                    c = event.call
                    mark = f" [red]{c.error}[/red]" if c.error else ""
                    err_console.print(f"  {c.interface}.{c.operation} → {c.provider_id} "
                                      f"{c.latency_ms:.1f} ms{mark}")
            elif event.HasField("log") and not args.json:
                err_console.print(f"  {event.log}")

        outcome = host.invoke(host_pb.InvokeRequest(component_id=info.component_id, verse_id=args.verse,
                                                    args=args.args, export=args.export), on_event)
    data = {"ok": outcome.ok, "value": outcome.value, "duration_ms": outcome.duration_ms,
            "provider_calls": outcome.provider_calls, "component": info.name, "calls": calls}
    try:
        data["value"] = json.loads(outcome.value)
    except (json.JSONDecodeError, TypeError):
        pass

    def render() -> None:
        if outcome.ok:
            console.print_json(outcome.value) if isinstance(data["value"], (dict, list)) else console.print(
                outcome.value)
            console.print(f"{info.name}: ok in {outcome.duration_ms:.0f} ms, {outcome.provider_calls} provider calls")
        else:
            err_console.print(f"worldrt: {info.name} returned err: {outcome.value}")

    _emit(args, data, render)
    return 0 if outcome.ok else 1


def _host_serve(args: argparse.Namespace) -> int:
    from ._host import Host, default_db
    from ._service import default_host_address, serve_host

    logging.basicConfig(level=os.environ.get("WORLDRT_LOG", "INFO"),
                        format="%(asctime)s host[%(process)d] %(levelname)s %(message)s")
    home = _home(args)
    host = Host(Path(args.db) if args.db else default_db(), home)
    serve_host(host, args.listen or default_host_address(home), args.token or os.environ.get("WORLDRT_TOKEN"))
    return 0


def _invocations(args: argparse.Namespace) -> int:
    from worldrt.v1 import host_pb

    with _session(args) as host:
        reply = host.recent_invocations(host_pb.RecentInvocationsRequest(limit=args.limit, verse_id=args.verse or ""))
    _emit(args, {"invocations": [_as_dict(r) for r in reply.invocations]}, lambda: console.print(_table(
        "recent provider invocations", ["at", "provider", "operation", "verse", "latency ms", "cost"],
        [[r.invoked_at, r.provider_id, r.operation, r.verse_id, f"{r.latency_ms:.2f}", f"{r.cost_units:.5f}"]
         for r in reply.invocations])))
    return 0


# parser ------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print data as JSON")
    common.add_argument("--db", help="registry file (default $WORLDRT_DB or .worldrt/world.duckdb)")
    common.add_argument("--home", help="state directory (default $WORLDRT_STATE_DIR or .worldrt)")
    common.add_argument("--host", help="address of a running host (default unix:HOME/host.sock)")

    top = argparse.ArgumentParser(prog="worldrt", description="Run portable verse programs across providers.")
    commands = top.add_subparsers(dest="command", required=True)

    providers = commands.add_parser("providers", help="the provider registry").add_subparsers(dest="action",
                                                                                              required=True)
    providers.add_parser("list", parents=[common], help="providers, trits and status").set_defaults(
        func=_providers_list)

    provider = commands.add_parser("provider", help="one provider").add_subparsers(dest="action", required=True)
    status = provider.add_parser("status", parents=[common], help="start it if needed; health and capabilities")
    status.add_argument("name")
    status.set_defaults(func=_provider_status)
    serve = provider.add_parser("serve", help="serve one provider on the worldrt.v1.WorldRuntime contract")
    serve.add_argument("name", help="morph, modal, primeintellect, gensyn or ritual")
    serve.add_argument("--listen", help="unix:PATH or HOST:PORT (default unix:STATE_DIR/NAME.sock)")
    serve.add_argument("--token", help="require 'authorization: Bearer TOKEN' (default $WORLDRT_TOKEN)")
    serve.add_argument("--state-dir", help="where sandboxes and keys live (default ./.worldrt/providers)")
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="engine option, e.g. pool_size=4, max_branches=256, ttl_s=3600")
    serve.set_defaults(func=_provider_serve)

    link = commands.add_parser("link", help="links from component interfaces to providers").add_subparsers(
        dest="action", required=True)
    put = link.add_parser("put", parents=[common], help="link INTERFACE=PROVIDER (a re-put replaces)")
    put.add_argument("binding", metavar="INTERFACE=PROVIDER")
    put.add_argument("--source", default="*", help="component the link is for (default: any)")
    put.add_argument("--name", default="default")
    put.add_argument("--id", help="link id (default SOURCE/INTERFACE/NAME)")
    put.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="link values, e.g. token=...")
    put.set_defaults(func=_link_put)
    delete = link.add_parser("del", parents=[common], help="delete a link by id or by interface")
    delete.add_argument("link", metavar="LINK_ID|INTERFACE")
    delete.add_argument("--source", default="*")
    delete.add_argument("--name", default="default")
    delete.set_defaults(func=_link_del)
    link.add_parser("list", parents=[common], help="every link").set_defaults(func=_link_list)

    component = commands.add_parser("component", help="verse components").add_subparsers(dest="action",
                                                                                          required=True)
    build = component.add_parser("build", parents=[common], help="build a Python component with componentize-py")
    build.add_argument("dir")
    build.add_argument("-o", "--output", required=True)
    build.set_defaults(func=_component_build)
    inspect = component.add_parser("inspect", parents=[common], help="imports, exports and size of a component")
    inspect.add_argument("file")
    inspect.set_defaults(func=_component_inspect)
    run = component.add_parser("run", parents=[common], help="run a component's export on a verse")
    run.add_argument("file")
    run.add_argument("--verse", type=int, required=True, help="verse id (u64)")
    run.add_argument("--args", default="", help="the export's string argument")
    run.add_argument("--export", default="run")
    run.add_argument("--link", action="append", default=[], metavar="INTERFACE=PROVIDER",
                     help="link for this component (repeatable; generator defaults to morph)")
    run.set_defaults(func=_component_run)

    host = commands.add_parser("host", help="the host").add_subparsers(dest="action", required=True)
    host_serve = host.add_parser("serve", parents=[common], help="serve worldrt.v1.Host until SIGTERM")
    host_serve.add_argument("--listen", help="unix:PATH or HOST:PORT (default unix:HOME/host.sock)")
    host_serve.add_argument("--token", help="require a bearer token (default $WORLDRT_TOKEN)")
    host_serve.set_defaults(func=_host_serve)

    calls = commands.add_parser("invocations", parents=[common], help="recent provider invocations")
    calls.add_argument("--limit", type=int, default=20)
    calls.add_argument("--verse")
    calls.set_defaults(func=_invocations)
    return top


def _terminate(_signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so an embedded host stops its providers and writes its queued rows.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    from ._errors import ComponentError
    from ._host import HostError
    from ._registry import RegistryError
    from ._supervisor import SupervisorError

    try:
        return args.func(args)
    except (CliError, HostError, ComponentError, RegistryError, SupervisorError, LookupError, ValueError,
            OSError, RuntimeError, grpc.RpcError) as exc:
        err_console.print(f"worldrt: {' '.join(str(exc).split())}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
