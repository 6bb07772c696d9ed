"""Pipeline benchmark: where the wall time of ``worldrt verse pipeline 1069`` (preset full, 3 branches) goes.

    python bench/pipeline.py [--runs 5] [--verse 1069] [--json bench/results/pipeline.json]

One run of the embedded host in a temporary home:
* one-offs, reported apart: the provider daemons' startup (the first selection starts all five), the
  explorer component's build (componentize-py) and compile (wasmtime), and the first (cold) pipeline run;
* N warm pipeline runs: the wall time of ``Host.run_verse``, and every provider call of its event stream,
  in order, attributed to a phase (latencies summed per phase); "component + host" is the rest of the wall;
* the bare baseline, interleaved with the warm runs: the cold run's sequence of gRPC calls (recorded at the
  router, instance and snapshot ids remapped) replayed directly from Python on the same daemons and channels.
Checks that every run gives the same baseline, winner and WEV. Target: wall p50 <= 3 s.

Rows: the phases (provider latency, as the host's router measures it around each gRPC call); "provider
time (Σ)", their sum; "component + host", the wall minus it, split into the host outside the component's
invocation (provider selection with health checks, component load, links, the run's row) and the
component with the router inside it; "wall − bare wall", what running through the host adds over the
replay. "share" is a row's p50 over the wall's p50; "bare p50" the same row for the direct replay.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, write_json

from worldrt.host import Host
from worldrt.host.runtime import OPERATIONS, CallContext, Operation
from worldrt.host.verse import example_component
from worldrt.v1 import host_pb, pb

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 3000.0
PROVIDER = "provider time (Σ)"  # the sum of the provider calls' latencies
REST = "component + host"  # wall − provider time
PHASES = ("baseline", "setup", "optimize", "verify", "evaluate", "merge", "attest", "teardown")


def phases_of(calls: list[host_pb.ProviderCall]) -> tuple[dict[str, float], dict[str, int]]:
    """Provider latency (ms) and call count per phase, for the full preset's call sequence."""
    ms = dict.fromkeys(PHASES, 0.0)
    count = dict.fromkeys(PHASES, 0)
    branched = False
    for call in calls:
        if call.provider_id == "modal":
            phase = "baseline"
        elif call.provider_id == "ritual":
            phase = "attest"
        elif call.interface == "coordinator":
            phase = "optimize"
        elif call.interface == "validator":
            phase = "verify"
        elif call.operation == "stop":
            phase = "teardown"
        elif call.operation == "merge":
            phase = "merge"
        elif call.operation == "execute" and branched:
            phase = "evaluate"
        else:
            phase = "setup"
        branched = branched or call.operation == "branch"
        ms[phase] += call.latency_ms
        count[phase] += 1
    return ms, count


@dataclass(frozen=True)
class RecordedCall:
    interface: str
    operation: str
    provider: str
    link: str
    source: str
    verse_id: int
    request: Message
    reply: Message


@contextmanager
def recording(host: Host) -> Iterator[list[RecordedCall]]:
    """Record every call the host's router makes (with the provider and link it resolved to)."""
    calls: list[RecordedCall] = []
    router = host.router
    original = router.call

    def call(op: Operation, request: Message, context: CallContext) -> Message:
        reply = original(op, request, context)
        link = router.links.resolve(context.source, op.interface, context.link_name(op.interface))
        assert link is not None
        calls.append(RecordedCall(op.interface, op.name, link.target_provider, link.name, context.source,
                                  context.verse_id, request, reply))
        return reply

    router.call = call  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        router.call = original  # type: ignore[method-assign]


def remap(request: Message, ids: dict[str, str]) -> Message:
    """A copy of ``request`` naming the replay's instances and snapshots instead of the recorded ones."""
    out = type(request)()
    out.CopyFrom(request)
    for name in ("instance_id", "snapshot_id"):
        if name in out.DESCRIPTOR.fields_by_name:
            setattr(out, name, ids.get(getattr(out, name), getattr(out, name)))
    if isinstance(out, pb.MergeRequest):
        out.instance_ids[:] = [ids.get(i, i) for i in out.instance_ids]
        scores = {ids.get(k, k): v for k, v in out.oracle.scores.items()}
        out.oracle.scores.clear()
        out.oracle.scores.update(scores)
    return out


def learn(recorded: Message, fresh: Message, ids: dict[str, str]) -> None:
    """Map the ids a recorded reply named to the ones the replay's reply names."""
    if isinstance(recorded, pb.Instance):
        ids[recorded.instance_id] = fresh.instance_id  # type: ignore[attr-defined]
    elif isinstance(recorded, pb.SnapshotRef):
        ids[recorded.snapshot_id] = fresh.snapshot_id  # type: ignore[attr-defined]
    elif isinstance(recorded, pb.BranchReply):
        for old, new in zip(recorded.instances, fresh.instances):  # type: ignore[attr-defined]
            ids[old.instance_id] = new.instance_id


def outcome_of(reply: Message) -> str | None:
    """The deterministic part of a reply, to check the replay did the same work."""
    if isinstance(reply, pb.ExecutionResult):
        return reply.value_json
    if isinstance(reply, pb.OptimizeReply):
        return reply.best_json
    if isinstance(reply, pb.VerifyReply):
        return str(reply.verdict)
    return None


def replay(host: Host, calls: list[RecordedCall]) -> tuple[float, list[host_pb.ProviderCall], int]:
    """Issue the recorded calls directly on the daemons: the wall ms, each call with its latency, and how
    many replies differ from the recorded ones."""
    stubs = {c.provider: host.own.stub(c.provider) for c in calls}
    token = ("authorization", f"Bearer {host.supervisor.token}")
    ids: dict[str, str] = {}
    done: list[host_pb.ProviderCall] = []
    differ = 0
    started = time.perf_counter()
    for c in calls:
        method = getattr(stubs[c.provider], OPERATIONS[(c.interface, c.operation)].rpc)
        metadata = (("x-worldrt-verse-id", str(c.verse_id)), ("x-worldrt-source", c.source),
                    ("x-worldrt-link-name", c.link), token)
        request = remap(c.request, ids)
        t0 = time.perf_counter()
        reply = method(request, metadata=metadata, timeout=330)
        done.append(host_pb.ProviderCall(interface=c.interface, operation=c.operation, provider_id=c.provider,
                                         latency_ms=(time.perf_counter() - t0) * 1000))
        learn(c.reply, reply, ids)
        differ += outcome_of(reply) != outcome_of(c.reply)
    return (time.perf_counter() - started) * 1000, done, differ


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="warm runs (at least 5)")
    ap.add_argument("--verse", type=int, default=1069)
    ap.add_argument("--branches", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "pipeline.json"))
    args = ap.parse_args()
    runs = max(args.runs, 5)
    request = host_pb.VerseRequest(verse_id=args.verse, kind="pipeline", preset="full", branches=args.branches)
    one_off: dict[str, float] = {}
    host_rows: dict[str, list[float]] = {}  # per warm run, through the host
    bare_rows: dict[str, list[float]] = {}  # per warm run, the same calls replayed directly
    outcomes: list[str] = []
    calls_per_phase: dict[str, int] = {}

    def sample(rows: dict[str, list[float]], name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="worldrt-bench-pipeline-") as tmp:
        with Host(Path(tmp) / "world.duckdb", Path(tmp)) as host:
            selected, one_off["provider daemons' startup (first selection)"] = timed(
                lambda: host.run_verse(host_pb.VerseRequest(kind="select", preset="full")))
            wasm, one_off["component build (componentize-py)"] = timed(
                lambda: example_component("explorer", host.home / "cache" / "examples"))
            _, one_off["component compile (wasmtime)"] = timed(
                lambda: host.load_component(host_pb.LoadComponentRequest(path=str(wasm))))
            with recording(host) as recorded:
                cold, one_off["first pipeline run (cold)"] = timed(lambda: host.run_verse(request))
            outcomes.append(json.dumps([cold["baseline_value"], cold["result"]["winner"], cold["wev"]]))

            for _ in range(runs):  # each warm run, then its bare replay, so machine noise falls on both
                events: list[host_pb.ProviderCall] = []

                def on_event(event: host_pb.InvokeEvent) -> None:
                    if event.HasField("call"):
                        events.append(event.call)

                run, wall = timed(lambda: host.run_verse(request, on_event))
                assert not any(e.error for e in events), [e.error for e in events if e.error]
                outcomes.append(json.dumps([run["baseline_value"], run["result"]["winner"], run["wev"]]))
                ms, calls_per_phase = phases_of(events)
                provider = sum(ms.values())
                for phase in PHASES:
                    sample(host_rows, phase, ms[phase])
                sample(host_rows, PROVIDER, provider)
                sample(host_rows, REST, wall - provider)
                sample(host_rows, "  host outside the invoke", wall - run["invoke_ms"])
                sample(host_rows, "  component + router", run["invoke_ms"] - provider)
                sample(host_rows, "wall", wall)

                bare_wall, bare_calls, differ = replay(host, recorded)
                assert differ == 0, f"the replay gave {differ} replies unlike the recorded ones"
                bare_ms, _ = phases_of(bare_calls)
                for phase in PHASES:
                    sample(bare_rows, phase, bare_ms[phase])
                sample(bare_rows, PROVIDER, sum(bare_ms.values()))
                sample(bare_rows, REST, bare_wall - sum(bare_ms.values()))
                sample(bare_rows, "wall", bare_wall)
                sample(host_rows, "wall − bare wall", wall - bare_wall)

    stats = {name: percentiles(samples) for name, samples in host_rows.items()}
    bare = {name: percentiles(samples) for name, samples in bare_rows.items()}
    wall_p50 = stats["wall"]["p50"]
    table = [[name, f"{s['p50']:.1f}", f"{s['p99']:.1f}", f"{s['p50'] / wall_p50 * 100:.1f}%",
              str(calls_per_phase.get(name, "")), f"{bare[name]['p50']:.1f}" if name in bare else ""]
             for name, s in stats.items()]
    print_table(f"verse pipeline {args.verse}: preset full, {args.branches} branches, {runs} warm runs (ms)",
                ["phase", "p50", "p99", "share", "calls", "bare p50"], table)
    print_table("one-offs (ms)", ["step", "ms"], [[name, f"{v:.0f}"] for name, v in one_off.items()])
    deterministic = len(set(outcomes)) == 1
    baseline_value, winner, wev = json.loads(outcomes[0])
    print(f"result: WEV {wev:+.2f} (winner {winner['rule']} {json.dumps(winner['params'])} {winner['value']:.2f} "
          f"− baseline {baseline_value:.2f}); same in all {len(outcomes)} runs: {'yes' if deterministic else 'NO'}")
    ok = wall_p50 <= TARGET_MS
    print(f"target: wall p50 {wall_p50:.0f} ms <= {TARGET_MS:.0f} ms: {'PASS' if ok else 'MISS'}; the same "
          f"{sum(calls_per_phase.values())} gRPC calls issued directly take {bare['wall']['p50']:.0f} ms")
    write_json(args.json, {"verse_id": args.verse, "preset": "full", "branches": args.branches, "runs": runs,
                           "providers": selected["providers"], "stats_ms": stats, "bare_replay_ms": bare,
                           "one_off_ms": one_off, "calls_per_phase": calls_per_phase,
                           "result": {"baseline": baseline_value, "winner": winner, "wev": wev},
                           "deterministic": deterministic, "target_ms": TARGET_MS, "target_met": ok})
    if not deterministic:
        sys.exit("the pipeline's result differed between runs")


if __name__ == "__main__":
    main()
