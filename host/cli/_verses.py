"""`worldrt verse`: pipeline, solo run, orchestration and provider selection, shown as they run."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from worldrt.host.cli._common import (
    Commands,
    Parents,
    console,
    emit,
    err_console,
    session,
    show_component_output,
    table,
)
from worldrt.v1 import host_pb


def progress(args: argparse.Namespace) -> Callable[[Any], None]:
    """Print each provider call of a running verse as it happens (to stderr, so --json stays clean); the
    component's own output goes to stderr too."""
    def on_event(event: Any) -> None:
        if event.HasField("output"):
            show_component_output(event)
            return
        if args.json:
            return
        if event.HasField("call"):
            c = event.call
            mark = f" [red]{c.error}[/red]" if c.error else ""
            startup = f" (start-up {c.startup_ms:.0f} ms)" if c.startup_ms >= 1 else ""
            err_console.print(f"  [dim]{c.interface}.{c.operation}[/dim] → {c.provider_id} {c.latency_ms:7.1f} ms"
                              f"{startup}{mark}")
        elif event.HasField("log"):
            err_console.print(f"  {event.log}", markup=False, highlight=False, style="dim")
    return on_event


def params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in params.items())


def verse_request(args: argparse.Namespace, kind: str, **fields: Any) -> host_pb.VerseRequest:
    return host_pb.VerseRequest(verse_id=getattr(args, "verse_id", 0), kind=kind,
                                component_path=getattr(args, "component", None) or "", **fields)


# A verse run starts one instance of a sandbox provider at most (its other instances are branches, forked from
# a snapshot): a host embedded for it keeps one sandbox warm in each, not a serving host's pools.
VERSE_WARM = 1


def preferred(preset_name: str) -> list[str]:
    """The providers a preset prefers, which an embedded host starts while it loads (none for an unknown
    preset: the host says why it refuses it)."""
    from worldrt.host.verse import SelectionError, preset

    try:
        return list(dict.fromkeys(preset(preset_name).values()))
    except SelectionError:
        return []


def verse_pipeline(args: argparse.Namespace) -> int:
    request = verse_request(args, "pipeline", preset=args.preset, branches=args.branches,
                             allow_unbalanced=args.allow_unbalanced)
    with session(args, start=preferred(args.preset), warm=VERSE_WARM) as host:
        if not args.json:
            err_console.print(f"verse {args.verse_id}: pipeline {args.preset}, {args.branches} branches")
        run = host.run_verse(request, progress(args))

    def render() -> None:
        result = run["result"]
        rows = []
        if result.get("baseline"):
            b = result["baseline"]
            rows.append(["baseline", b["rule"], params(b["params"]), f"{b['value']:.2f}", "", "", ""])
        winner = result.get("winner") or {}
        for c in result.get("candidates", []):
            v = c.get("verification") or {}
            opt = c.get("optimized") or {}
            rows.append(["branch" if result.get("snapshot") else "candidate", c["rule"], params(c["params"]),
                         f"{c['value']:.2f}", f"{opt['best_value']:.2f}" if opt else "-",
                         ("yes" if c["verified"] else "[red]no[/red]") + (f" ({v['reexecuted_steps']} steps)" if v else ""),
                         "[bold green]winner[/bold green]" if c["rule"] == winner.get("rule")
                         and c["params"] == winner.get("params") else ""])
        console.print(table(f"verse {run['verse_id']} · preset {run['preset']}", ["", "rule", "params", "value",
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

    emit(args, run, render)
    return 0


def verse_run(args: argparse.Namespace) -> int:
    request = verse_request(args, "solo", provider=args.on)
    with session(args, start=[args.on], warm=VERSE_WARM) as host:
        run = host.run_verse(request, progress(args))

    def render() -> None:
        result = run["result"]
        console.print(f"verse {run['verse_id']} on {run['provider']} (role {run['role']}, trit {run['trit']:+d}), "
                      f"{run['duration_ms']:.0f} ms, cost {run['cost_units']:.4f} units")
        if result.get("baseline"):
            b = result["baseline"]
            console.print(f"  baseline {b['rule']} {params(b['params'])}: {b['value']:.2f}")
        for c in result.get("candidates", []):
            extra = ""
            if c.get("optimized"):
                extra += f" optimized over {c['optimized']['steps']} steps"
            if c.get("verification"):
                v = c["verification"]
                extra += f" verified={v['verdict']} ({v['reexecuted_steps']} steps re-executed)"
            console.print(f"  {c['rule']} {params(c['params'])}: {c['value']:.2f}{extra}")
        if result.get("winner"):
            console.print(f"  winner {result['winner']['rule']}: {result['winner']['value']:.2f}")
        if result.get("attestation"):
            a = result["attestation"]
            console.print(f"  attestation verdict {a['verdict']}, commitment {a['commitment'][:16]}…")

    emit(args, run, render)
    return 0


def verse_orchestrate(args: argparse.Namespace) -> int:
    request = verse_request(args, "orchestrate", mode=args.mode, preset=args.preset, branches=args.branches,
                             stake=args.stake, allow_unbalanced=args.allow_unbalanced)
    with session(args, start=preferred(args.preset), warm=VERSE_WARM) as host:
        run = host.run_verse(request, progress(args))

    def render() -> None:
        rows = [[o, f"{v:.2f}", f"{run['payoff_before'][o]:.2f}", f"{run['payoff_after_push_down'][o]:.2f}",
                 "observed" if o == run["observed"] else "dies"] for o, v in run["branch_values"].items()]
        console.print(table(f"verse {run['verse_id']} · {run['mode']}: {run['mode_rule']}",
                             ["child verse", "value", "payoff before", "after push_down", ""], rows))
        console.print(f"{run['owner']} pulled up {run['pulled_up']:.2f} from {run['observed']}; payoff "
                      f"{run['payoff_after_pull_up']:.2f} (invariant held: {run['invariant_held']}) · "
                      f"WEV {run['wev']:+.2f} · ledger {run['multiverse']}")

    emit(args, run, render)
    return 0 if run["invariant_held"] else 1


def verse_select(args: argparse.Namespace) -> int:
    with session(args, start=preferred(args.preset), warm=VERSE_WARM) as host:
        chosen = host.run_verse(verse_request(args, "select", preset=args.preset))

    def render() -> None:
        console.print(f"select-provider {json.dumps(chosen['requirements'])} → {json.dumps(chosen['select_provider'])}")
        console.print(table(f"preset {chosen['preset']}", ["role", "provider", "trit", "substituted"],
                             [[r["role"], r["provider"], f"{r['trit']:+d}", "yes" if r["substituted"] else ""]
                              for r in chosen["roles"]]))
        console.print(f"GF(3) sum {chosen['gf3_sum']} ({'balanced' if chosen['balanced'] else 'UNBALANCED'})")

    emit(args, chosen, render)
    return 0


def add_commands(commands: Commands, parents: Parents) -> None:
    verse = commands.add_parser("verse", help="run verses").add_subparsers(dest="action", required=True)
    pipeline = verse.add_parser("pipeline", parents=[parents.common], help="branch → optimize → verify → merge → WEV")
    pipeline.add_argument("verse_id", type=int)
    pipeline.add_argument("--preset", default="full", help="full, branch or inference")
    pipeline.add_argument("--branches", type=int, default=3)
    pipeline.add_argument("--component", help="your verse component (default: the explorer example)")
    pipeline.add_argument("--allow-unbalanced", action="store_true", help="run even if GF(3) does not balance")
    pipeline.set_defaults(func=verse_pipeline)
    solo = verse.add_parser("run", parents=[parents.common], help="one provider's role alone on a verse")
    solo.add_argument("verse_id", type=int)
    solo.add_argument("--on", required=True, metavar="PROVIDER")
    solo.add_argument("--component")
    solo.set_defaults(func=verse_run)
    orchestrate = verse.add_parser("orchestrate", parents=[parents.common], help="push_down → pipeline → pull_up")
    orchestrate.add_argument("verse_id", type=int)
    orchestrate.add_argument("mode", help="optimal (max value), robust (median) or pessimistic (min)")
    orchestrate.add_argument("--preset", default="full")
    orchestrate.add_argument("--branches", type=int, default=3)
    orchestrate.add_argument("--stake", type=float, default=100.0)
    orchestrate.add_argument("--component")
    orchestrate.add_argument("--allow-unbalanced", action="store_true")
    orchestrate.set_defaults(func=verse_orchestrate)
    select = verse.add_parser("select", parents=[parents.common], help="the providers a preset selects now")
    select.add_argument("preset", help="full, branch or inference")
    select.set_defaults(func=verse_select)

