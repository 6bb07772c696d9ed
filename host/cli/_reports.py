"""`worldrt audit`, `worldrt analytics` and `worldrt invocations`: reports from the registry."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worldrt.host.cli._common import Commands, Parents, as_dict, console, emit, session, table
from worldrt.v1 import host_pb


def report(args: argparse.Namespace, report: str, **fields: Any) -> list[dict[str, Any]]:
    with session(args) as host:
        rows: list[dict[str, Any]] = json.loads(host.analytics(host_pb.AnalyticsRequest(report=report, **fields)).rows_json)
    return rows


def audit_gf3(args: argparse.Namespace) -> int:
    rows = report(args, "audit", all_runs=True)
    bad = [r for r in rows if not r["balanced"]]

    def render() -> None:
        console.print(f"{len(rows)} recorded run(s), {len(bad)} unbalanced")
        if bad:
            console.print(table("unbalanced runs", ["run", "verse", "preset", "problem"],
                                 [[r["run_id"][:12], r["verse_id"], r["preset"], r["problem"]] for r in bad]))

    emit(args, {"runs": len(rows), "unbalanced": bad}, render)
    return 0 if not bad else 1


def analytics_wev(args: argparse.Namespace) -> int:
    from worldrt.host.verse import plot_wev

    rows = report(args, "wev")
    if args.plot:
        plot_wev(rows, args.plot)
    emit(args, {"rows": rows, "plot": args.plot}, lambda: console.print(table(
        "WEV over time", ["at", "verse", "preset", "baseline", "winner", "WEV", "cumulative"],
        [[r["started_at"], r["verse_id"], r["preset"], f"{r['baseline_value']:.2f}", f"{r['winner_value']:.2f}",
          f"{r['wev']:+.2f}", f"{r['cumulative_wev']:+.2f}"] for r in rows if r["wev"] is not None])))
    return 0


def analytics_efficiency(args: argparse.Namespace) -> int:
    from worldrt.host.verse import plot_efficiency

    rows = report(args, "efficiency")
    per_cost = report(args, "wev_per_cost")
    if args.plot:
        plot_efficiency(rows, args.plot, per_cost)

    def render() -> None:
        console.print(table("cost and latency per provider and operation",
                             ["provider", "operation", "calls", "cost total", "cost/call", "p50 ms", "p99 ms"],
                             [[r["provider_id"], r["operation"], r["calls"], f"{r['cost_total']:.4f}",
                               f"{r['cost_per_call']:.5f}", f"{r['latency_p50_ms']:.2f}", f"{r['latency_p99_ms']:.2f}"]
                              for r in rows]))
        console.print(table("WEV per cost unit", ["preset", "runs", "WEV total", "cost total", "WEV / cost unit"],
                             [[r["preset"], r["runs"], f"{r['wev_total']:+.2f}", f"{r['cost_total']:.4f}",
                               f"{r['wev_per_cost_unit']:.1f}" if r["wev_per_cost_unit"] is not None else "-"]
                              for r in per_cost]))

    emit(args, {"rows": rows, "wev_per_cost": per_cost, "plot": args.plot}, render)
    return 0


def analytics_benchmark(args: argparse.Namespace) -> int:
    rows = report(args, "benchmark", reps=args.reps)
    emit(args, {"rows": rows}, lambda: console.print(table(
        f"provider operations now ({args.reps} calls each, ms)",
        ["provider", "operation", "p50", "p99", "Morph claim", "p50 / claim", "note"],
        [[r["provider"], r["operation"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['morph_claim_ms']:.0f}",
          f"{r['vs_claim']:.3f}", r["note"]] for r in rows])))
    return 0


def invocations(args: argparse.Namespace) -> int:
    with session(args) as host:
        reply = host.recent_invocations(host_pb.RecentInvocationsRequest(limit=args.limit, verse_id=args.verse or ""))
    emit(args, {"invocations": [as_dict(r) for r in reply.invocations]}, lambda: console.print(table(
        "recent provider invocations", ["at", "provider", "operation", "verse", "latency ms", "cost"],
        [[r.invoked_at, r.provider_id, r.operation, r.verse_id, f"{r.latency_ms:.2f}", f"{r.cost_units:.5f}"]
         for r in reply.invocations])))
    return 0


def add_commands(commands: Commands, parents: Parents) -> None:
    audit = commands.add_parser("audit", help="audits").add_subparsers(dest="action", required=True)
    audit.add_parser("gf3", parents=[parents.common], help="check every recorded run's GF(3) balance").set_defaults(
        func=audit_gf3)

    analytics = commands.add_parser("analytics", help="from the registry").add_subparsers(dest="action",
                                                                                         required=True)
    for name, func, text in (("wev", analytics_wev, "WEV over time per verse and preset"),
                             ("efficiency", analytics_efficiency, "cost and latency per provider and operation")):
        command = analytics.add_parser(name, parents=[parents.common], help=text)
        command.add_argument("--plot", metavar="FILE.png", help="also draw it with matplotlib")
        command.set_defaults(func=func)
    bench = analytics.add_parser("benchmark", parents=[parents.common], help="time each provider's main operations now")
    bench.add_argument("--reps", type=int, default=10)
    bench.set_defaults(func=analytics_benchmark)

    calls = commands.add_parser("invocations", parents=[parents.common], help="recent provider invocations")
    calls.add_argument("--limit", type=int, default=20)
    calls.add_argument("--verse")
    calls.set_defaults(func=invocations)
