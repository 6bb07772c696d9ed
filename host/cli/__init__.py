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
    from worldrt.host._host import default_home

    return Path(args.home) if args.home else default_home()


def _session(args: argparse.Namespace):  # noqa: ANN202 - returns the Session context manager
    from worldrt.providers._auth import read_token_file
    from worldrt.providers._channel import ClientTls

    from worldrt.host._client import Session
    from worldrt.host._host import default_db
    from worldrt.host._service import default_host_address

    home = _home(args)
    address = args.host or os.environ.get("WORLDRT_HOST") or default_host_address(home)
    return Session(address, Path(args.db) if args.db else default_db(), home,
                   token=read_token_file(args.token_file) if args.token_file else None,
                   tls=ClientTls.from_env(args.tls_ca, args.tls_cert, args.tls_key))


def _no_token_flag(value: str) -> str:
    raise argparse.ArgumentTypeError(
        "--token is gone: a token on the command line is readable by anyone in /proc/PID/cmdline; put it in "
        "WORLDRT_TOKEN or in a file only you can read, passed with --token-file PATH")


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
    from worldrt.providers._auth import token_from
    from worldrt.providers._daemon import default_state_dir, run
    from worldrt.providers._server import ServerTls

    values = dict(_key_value(item) for item in args.set)
    run(args.name, args.listen, token_from(args.token_file),
        Path(args.state_dir) if args.state_dir else default_state_dir(), values,
        tls=ServerTls.from_args(args.tls_cert, args.tls_key, args.tls_client_ca), insecure=args.insecure)
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
    secrets = {}
    for item in args.secret_file:
        key, path = _key_value(item)
        try:
            secrets[key] = Path(path).read_text().rstrip("\n")
        except OSError as exc:
            raise CliError(f"--secret-file {key}: cannot read {path}: {exc.strerror}") from None
    link = pb.LinkConfig(link_id=args.id or "", source_component=args.source, name=args.name,
                         interfaces=[interface], target_provider=provider,
                         values=dict(_key_value(v) for v in args.set), secrets=secrets)
    with _session(args) as host:
        reply = host.put_link(link)
    _emit(args, _as_dict(reply), lambda: console.print(
        f"{'replaced' if reply.existed else 'put'} link {reply.link_id}: {interface} → {provider}"))
    return 0


def _link_del(args: argparse.Namespace) -> int:
    from worldrt.v1 import pb

    from worldrt.host.lattice._links import HostLink

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
    from worldrt.host.runtime._toolchain import build_component

    with console.status(f"building {args.dir} with componentize-py"):
        result = build_component(args.dir, args.output)
    data = {"path": str(result.path), "size_bytes": result.size_bytes, "seconds": round(result.seconds, 2)}
    _emit(args, data, lambda: console.print(
        f"built {result.path} ({result.size_bytes / 2**20:.1f} MiB) in {result.seconds:.1f} s"))
    return 0


def _component_inspect(args: argparse.Namespace) -> int:
    from worldrt.host.runtime._toolchain import inspect_component

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
    from worldrt.providers._auth import ensure_token_file, token_from
    from worldrt.providers._server import ServerTls, listen_address

    from worldrt.host._client import HOST_TOKEN_FILE
    from worldrt.host._host import Host, default_db
    from worldrt.providers._files import private_dir
    from worldrt.host._service import default_host_address, serve_host

    logging.basicConfig(level=os.environ.get("WORLDRT_LOG", "INFO"),
                        format="%(asctime)s host[%(process)d] %(levelname)s %(message)s")
    home = private_dir(_home(args))
    token = token_from(args.token_file) or ensure_token_file(home / HOST_TOKEN_FILE)
    tls = ServerTls.from_args(args.tls_cert, args.tls_key, args.tls_client_ca)
    listen = listen_address(args.listen or default_host_address(home), tls=tls, token=token)
    if args.output_cap is not None and args.output_cap < 0:
        raise CliError(f"--output-cap must be 0 bytes or more, got {args.output_cap}")
    host = Host(Path(args.db) if args.db else default_db(), home, keep_days=args.keep_days,
                output_cap=args.output_cap)
    serve_host(host, listen, token, tls=tls)
    return 0


def _tls_init(args: argparse.Namespace) -> int:
    from worldrt.host.lattice._certificates import init_tls

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

    _emit(args, data, render)
    return 0


# verses ------------------------------------------------------------------------------------------
def _progress(args: argparse.Namespace) -> Callable[[Any], None]:
    """Print each provider call of a running verse as it happens (to stderr, so --json stays clean)."""
    def on_event(event: Any) -> None:
        if args.json:
            return
        if event.HasField("call"):
            c = event.call
            mark = f" [red]{c.error}[/red]" if c.error else ""
            err_console.print(f"  [dim]{c.interface}.{c.operation}[/dim] → {c.provider_id} {c.latency_ms:7.1f} ms"
                              f"{mark}")
        elif event.HasField("log"):
            err_console.print(f"  {event.log}", markup=False, highlight=False, style="dim")
    return on_event


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in params.items())


def _verse_request(args: argparse.Namespace, kind: str, **fields: Any):  # noqa: ANN202
    from worldrt.v1 import host_pb

    return host_pb.VerseRequest(verse_id=getattr(args, "verse_id", 0), kind=kind,
                                component_path=getattr(args, "component", None) or "", **fields)


def _verse_pipeline(args: argparse.Namespace) -> int:
    request = _verse_request(args, "pipeline", preset=args.preset, branches=args.branches,
                             allow_unbalanced=args.allow_unbalanced)
    with _session(args) as host:
        if not args.json:
            err_console.print(f"verse {args.verse_id}: pipeline {args.preset}, {args.branches} branches")
        run = host.run_verse(request, _progress(args))

    def render() -> None:
        result = run["result"]
        rows = []
        if result.get("baseline"):
            b = result["baseline"]
            rows.append(["baseline", b["rule"], _params(b["params"]), f"{b['value']:.2f}", "", "", ""])
        winner = result.get("winner") or {}
        for c in result.get("candidates", []):
            v = c.get("verification") or {}
            opt = c.get("optimized") or {}
            rows.append(["branch" if result.get("snapshot") else "candidate", c["rule"], _params(c["params"]),
                         f"{c['value']:.2f}", f"{opt['best_value']:.2f}" if opt else "-",
                         ("yes" if c["verified"] else "[red]no[/red]") + (f" ({v['reexecuted_steps']} steps)" if v else ""),
                         "[bold green]winner[/bold green]" if c["rule"] == winner.get("rule")
                         and c["params"] == winner.get("params") else ""])
        console.print(_table(f"verse {run['verse_id']} · preset {run['preset']}", ["", "rule", "params", "value",
                                                                                   "optimized", "verified", ""], rows))
        att = result.get("attestation")
        if att:
            console.print(f"attested by ritual: verdict {att['verdict']}, commitment {att['commitment'][:16]}…, "
                          f"matches winner {att['matches_winner']}")
        trits = " ".join(f"{t:+d}" for t in run["trits"])
        console.print(f"providers {' → '.join(run['providers'])} · trits {trits} · GF(3) sum {run['gf3_sum']}"
                      f" ({'balanced' if run['balanced'] else 'UNBALANCED'})")
        wev = run["wev"]
        console.print(f"[bold]WEV {wev:+.2f}[/bold] (winner {run['winner_value']:.2f} − baseline "
                      f"{run['baseline_value']:.2f}) · cost {run['cost_units']:.4f} units · "
                      f"{run['duration_ms']:.0f} ms · run {run['run_id'][:12]}" if wev is not None else
                      f"no WEV (no baseline or winner) · run {run['run_id'][:12]}")

    _emit(args, run, render)
    return 0


def _verse_run(args: argparse.Namespace) -> int:
    request = _verse_request(args, "solo", provider=args.on)
    with _session(args) as host:
        run = host.run_verse(request, _progress(args))

    def render() -> None:
        result = run["result"]
        console.print(f"verse {run['verse_id']} on {run['provider']} (role {run['role']}, trit {run['trit']:+d}), "
                      f"{run['duration_ms']:.0f} ms, cost {run['cost_units']:.4f} units")
        if result.get("baseline"):
            b = result["baseline"]
            console.print(f"  baseline {b['rule']} {_params(b['params'])}: {b['value']:.2f}")
        for c in result.get("candidates", []):
            extra = ""
            if c.get("optimized"):
                extra += f" optimized over {c['optimized']['steps']} steps"
            if c.get("verification"):
                v = c["verification"]
                extra += f" verified={v['verdict']} ({v['reexecuted_steps']} steps re-executed)"
            console.print(f"  {c['rule']} {_params(c['params'])}: {c['value']:.2f}{extra}")
        if result.get("winner"):
            console.print(f"  winner {result['winner']['rule']}: {result['winner']['value']:.2f}")
        if result.get("attestation"):
            a = result["attestation"]
            console.print(f"  attestation verdict {a['verdict']}, commitment {a['commitment'][:16]}…")

    _emit(args, run, render)
    return 0


def _verse_orchestrate(args: argparse.Namespace) -> int:
    request = _verse_request(args, "orchestrate", mode=args.mode, preset=args.preset, branches=args.branches,
                             stake=args.stake, allow_unbalanced=args.allow_unbalanced)
    with _session(args) as host:
        run = host.run_verse(request, _progress(args))

    def render() -> None:
        rows = [[o, f"{v:.2f}", f"{run['payoff_before'][o]:.2f}", f"{run['payoff_after_push_down'][o]:.2f}",
                 "observed" if o == run["observed"] else "dies"] for o, v in run["branch_values"].items()]
        console.print(_table(f"verse {run['verse_id']} · {run['mode']}: {run['mode_rule']}",
                             ["child verse", "value", "payoff before", "after push_down", ""], rows))
        console.print(f"{run['owner']} pulled up {run['pulled_up']:.2f} from {run['observed']}; payoff "
                      f"{run['payoff_after_pull_up']:.2f} (invariant held: {run['invariant_held']}) · "
                      f"WEV {run['wev']:+.2f} · ledger {run['multiverse']}")

    _emit(args, run, render)
    return 0 if run["invariant_held"] else 1


def _verse_select(args: argparse.Namespace) -> int:
    with _session(args) as host:
        chosen = host.run_verse(_verse_request(args, "select", preset=args.preset))

    def render() -> None:
        console.print(f"select-provider {json.dumps(chosen['requirements'])} → {json.dumps(chosen['select_provider'])}")
        console.print(_table(f"preset {chosen['preset']}", ["role", "provider", "trit", "substituted"],
                             [[r["role"], r["provider"], f"{r['trit']:+d}", "yes" if r["substituted"] else ""]
                              for r in chosen["roles"]]))
        console.print(f"GF(3) sum {chosen['gf3_sum']} ({'balanced' if chosen['balanced'] else 'UNBALANCED'})")

    _emit(args, chosen, render)
    return 0


def _report(args: argparse.Namespace, report: str, **fields: Any) -> list[dict[str, Any]]:
    from worldrt.v1 import host_pb

    with _session(args) as host:
        return json.loads(host.analytics(host_pb.AnalyticsRequest(report=report, **fields)).rows_json)


def _audit_gf3(args: argparse.Namespace) -> int:
    rows = _report(args, "audit", all_runs=True)
    bad = [r for r in rows if not r["balanced"]]

    def render() -> None:
        console.print(f"{len(rows)} recorded run(s), {len(bad)} unbalanced")
        if bad:
            console.print(_table("unbalanced runs", ["run", "verse", "preset", "problem"],
                                 [[r["run_id"][:12], r["verse_id"], r["preset"], r["problem"]] for r in bad]))

    _emit(args, {"runs": len(rows), "unbalanced": bad}, render)
    return 0 if not bad else 1


def _analytics_wev(args: argparse.Namespace) -> int:
    from worldrt.host.verse._analytics import plot_wev

    rows = _report(args, "wev")
    if args.plot:
        plot_wev(rows, args.plot)
    _emit(args, {"rows": rows, "plot": args.plot}, lambda: console.print(_table(
        "WEV over time", ["at", "verse", "preset", "baseline", "winner", "WEV", "cumulative"],
        [[r["started_at"], r["verse_id"], r["preset"], f"{r['baseline_value']:.2f}", f"{r['winner_value']:.2f}",
          f"{r['wev']:+.2f}", f"{r['cumulative_wev']:+.2f}"] for r in rows if r["wev"] is not None])))
    return 0


def _analytics_efficiency(args: argparse.Namespace) -> int:
    from worldrt.host.verse._analytics import plot_efficiency

    rows = _report(args, "efficiency")
    per_cost = _report(args, "wev_per_cost")
    if args.plot:
        plot_efficiency(rows, args.plot, per_cost)

    def render() -> None:
        console.print(_table("cost and latency per provider and operation",
                             ["provider", "operation", "calls", "cost total", "cost/call", "p50 ms", "p99 ms"],
                             [[r["provider_id"], r["operation"], r["calls"], f"{r['cost_total']:.4f}",
                               f"{r['cost_per_call']:.5f}", f"{r['latency_p50_ms']:.2f}", f"{r['latency_p99_ms']:.2f}"]
                              for r in rows]))
        console.print(_table("WEV per cost unit", ["preset", "runs", "WEV total", "cost total", "WEV / cost unit"],
                             [[r["preset"], r["runs"], f"{r['wev_total']:+.2f}", f"{r['cost_total']:.4f}",
                               f"{r['wev_per_cost_unit']:.1f}" if r["wev_per_cost_unit"] is not None else "-"]
                              for r in per_cost]))

    _emit(args, {"rows": rows, "wev_per_cost": per_cost, "plot": args.plot}, render)
    return 0


def _analytics_benchmark(args: argparse.Namespace) -> int:
    rows = _report(args, "benchmark", reps=args.reps)
    _emit(args, {"rows": rows}, lambda: console.print(_table(
        f"provider operations now ({args.reps} calls each, ms)",
        ["provider", "operation", "p50", "p99", "Morph claim", "p50 / claim", "note"],
        [[r["provider"], r["operation"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['morph_claim_ms']:.0f}",
          f"{r['vs_claim']:.3f}", r["note"]] for r in rows])))
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
    base = argparse.ArgumentParser(add_help=False)
    base.add_argument("--json", action="store_true", help="print data as JSON")
    base.add_argument("--db", help="registry file (default $WORLDRT_DB or .worldrt/world.duckdb)")
    base.add_argument("--home", help="state directory (default $WORLDRT_STATE_DIR or .worldrt)")
    common = argparse.ArgumentParser(add_help=False, parents=[base])
    common.add_argument("--host", help="address of a running host (default unix:HOME/host.sock)")
    common.add_argument("--token-file", metavar="PATH",
                        help="the running host's token (default $WORLDRT_TOKEN, else HOME/host.token)")
    common.add_argument("--tls-ca", metavar="PEM", help="CA of a HOST:PORT host's certificate (default $WORLDRT_TLS_CA)")
    common.add_argument("--tls-cert", metavar="PEM",
                        help="client certificate, for a host that requires one (default $WORLDRT_TLS_CERT)")
    common.add_argument("--tls-key", metavar="PEM", help="its key (default $WORLDRT_TLS_KEY)")
    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument("--token-file", metavar="PATH",
                         help="require the bearer token in this file, which only its owner may read "
                              "(default $WORLDRT_TOKEN)")
    serving.add_argument("--token", type=_no_token_flag, help=argparse.SUPPRESS)
    serving.add_argument("--tls-cert", metavar="PEM", help="serve HOST:PORT with TLS: this certificate ...")
    serving.add_argument("--tls-key", metavar="PEM", help="... and its key")
    serving.add_argument("--tls-client-ca", metavar="PEM",
                         help="mutual TLS: accept only clients with a certificate this CA signed")

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
    serve = provider.add_parser("serve", parents=[serving],
                                help="serve one provider on the worldrt.v1.WorldRuntime contract")
    serve.add_argument("name", help="morph, modal, primeintellect, gensyn or ritual")
    serve.add_argument("--listen", help="unix:PATH or HOST:PORT (default unix:STATE_DIR/NAME.sock); a HOST:PORT "
                                        "off loopback needs TLS")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a HOST:PORT off loopback without TLS (only without a token)")
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
    put.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="link values for the provider (a value named token is kept secret)")
    put.add_argument("--secret-file", action="append", default=[], metavar="KEY=PATH",
                     help="a link secret read from a file: forwarded to the provider, never stored or shown")
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
    host_serve = host.add_parser(
        "serve", parents=[base, serving], help="serve worldrt.v1.Host until SIGTERM",
        description="Serve worldrt.v1.Host. Clients need its bearer token: --token-file, else $WORLDRT_TOKEN, "
                    "else HOME/host.token (made, mode 0600, on the first start and reused).")
    host_serve.add_argument("--listen", help="unix:PATH or HOST:PORT (default unix:HOME/host.sock); a HOST:PORT off "
                                             "loopback needs TLS")
    host_serve.add_argument("--keep-days", type=float, metavar="N",
                            help="prune provider_invocations rows older than N days, at start and then hourly "
                                 "(default $WORLDRT_KEEP_DAYS; unset keeps every row; runs, links and providers "
                                 "are never pruned)")
    host_serve.add_argument("--output-cap", type=int, metavar="BYTES",
                            help="bytes of stdout, stderr and code each stored invocation row keeps, with the full "
                                 "size beside them (default $WORLDRT_OUTPUT_CAP or 4096)")
    host_serve.set_defaults(func=_host_serve)

    tls = commands.add_parser("tls", help="certificates for TLS").add_subparsers(dest="action", required=True)
    tls_init = tls.add_parser("init", parents=[base], help="a local CA and a certificate and key per host",
                              description="Make DIR/ca.pem and ca.key (or reuse them) and, per host NAME, NAME.pem "
                                          "and NAME.key (0600), for server and client authentication.")
    tls_init.add_argument("dir", metavar="DIR")
    tls_init.add_argument("--host", dest="hosts", action="append", required=True, metavar="NAME[,NAME...]",
                          help="host names (repeatable): one certificate each, valid for that DNS name")
    tls_init.add_argument("--ip", action="extend", nargs="+", default=[], metavar="[NAME=]ADDR",
                          help="IP addresses every certificate is valid for (NAME=ADDR: that host's only)")
    tls_init.set_defaults(func=_tls_init)

    verse = commands.add_parser("verse", help="run verses").add_subparsers(dest="action", required=True)
    pipeline = verse.add_parser("pipeline", parents=[common], help="branch → optimize → verify → merge → WEV")
    pipeline.add_argument("verse_id", type=int)
    pipeline.add_argument("--preset", default="full", help="full, branch or inference")
    pipeline.add_argument("--branches", type=int, default=3)
    pipeline.add_argument("--component", help="your verse component (default: the explorer example)")
    pipeline.add_argument("--allow-unbalanced", action="store_true", help="run even if GF(3) does not balance")
    pipeline.set_defaults(func=_verse_pipeline)
    solo = verse.add_parser("run", parents=[common], help="one provider's role alone on a verse")
    solo.add_argument("verse_id", type=int)
    solo.add_argument("--on", required=True, metavar="PROVIDER")
    solo.add_argument("--component")
    solo.set_defaults(func=_verse_run)
    orchestrate = verse.add_parser("orchestrate", parents=[common], help="push_down → pipeline → pull_up")
    orchestrate.add_argument("verse_id", type=int)
    orchestrate.add_argument("mode", help="optimal (max value), robust (median) or pessimistic (min)")
    orchestrate.add_argument("--preset", default="full")
    orchestrate.add_argument("--branches", type=int, default=3)
    orchestrate.add_argument("--stake", type=float, default=100.0)
    orchestrate.add_argument("--component")
    orchestrate.add_argument("--allow-unbalanced", action="store_true")
    orchestrate.set_defaults(func=_verse_orchestrate)
    select = verse.add_parser("select", parents=[common], help="the providers a preset selects now")
    select.add_argument("preset", help="full, branch or inference")
    select.set_defaults(func=_verse_select)

    audit = commands.add_parser("audit", help="audits").add_subparsers(dest="action", required=True)
    audit.add_parser("gf3", parents=[common], help="check every recorded run's GF(3) balance").set_defaults(
        func=_audit_gf3)

    analytics = commands.add_parser("analytics", help="from the registry").add_subparsers(dest="action",
                                                                                         required=True)
    for name, func, text in (("wev", _analytics_wev, "WEV over time per verse and preset"),
                             ("efficiency", _analytics_efficiency, "cost and latency per provider and operation")):
        report = analytics.add_parser(name, parents=[common], help=text)
        report.add_argument("--plot", metavar="FILE.png", help="also draw it with matplotlib")
        report.set_defaults(func=func)
    bench = analytics.add_parser("benchmark", parents=[common], help="time each provider's main operations now")
    bench.add_argument("--reps", type=int, default=10)
    bench.set_defaults(func=_analytics_benchmark)

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
    from worldrt.host.runtime._errors import ComponentError
    from worldrt.host._host import HostError
    from worldrt.host.registry._store import RegistryError
    from worldrt.host.lattice._supervisor import SupervisorError

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
