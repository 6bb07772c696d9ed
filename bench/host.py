"""Host benchmark: what the host adds to a provider call, and how fast it records calls.

    python bench/host.py [--reps 300] [--json bench/results/host.json]

One run, side by side on the same morph daemon and instance:
* a direct gRPC Execute (the bare baseline);
* the same Execute through the host's router (link lookup, metadata, recording on the registry queue);
* the same, from WebAssembly components through the host (wasmtime import call + router), per call: a WAT
  component (bench/wat/execute_loop.wat: only the import call) and the componentize-py caller example;
* the router with the registry's recording switched off, to show what logging adds;
* the floor of the component path: the WAT component's import answered at once in this process with the
  same reply (no router, no gRPC), so what is left is wasmtime-py's call into Python and the records'
  conversion;
* invocation rows written per second by the registry's batch writer;
* then, in the same run, telemetry on (traces exported over OTLP to a receiver in another process, metrics
  served on 127.0.0.1): a routed Execute on a second host whose daemon traces too, interleaved with the
  routed Execute on the first host with telemetry off (``--no-telemetry`` skips it). Target: at most 5% more
  at p50. The export (SDK default batches from a background thread) is off the timed path, as in
  production.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _otlp import collector
from _report import percentiles, print_table, timed, write_json
from wasmtime import _ffi as ffi
from wasmtime.component import ComponentInstanceType, FuncType

from worldrt.host import Host
from worldrt.host.registry import Invocation
from worldrt.host.routing import DirectRouter, Reply, Router, Target, Transport
from worldrt.host.runtime import OPERATIONS, CallContext, ComponentRuntime, ImportCodec, wit_interface
from worldrt.v1 import host_pb, pb

ROOT = Path(__file__).resolve().parent.parent
LOOP_COMPONENT = ROOT / "components" / "examples" / "caller"
EXECUTE_LOOP = ROOT / "bench" / "wat" / "execute_loop.wat"
CALLS = 200
WAT_FLOOR = "WAT import answered at once, no router or gRPC (floor, per call)"
WAT_DIRECT = "Execute from a WAT component, straight to the daemon: no router (per call)"
PY_DIRECT = "Execute from a Python component, straight to the daemon: no router (per call)"
PY_FLOOR = "Python import answered at once, no router or gRPC (floor, per call)"



class _Answering:
    """A router that answers every provider call at once with one reply (the floor of the import path). The
    WAT loop makes unary calls only, so this router has no ``call_stream``."""

    def __init__(self, reply: object) -> None:
        self.reply = reply

    def call(self, op: object, request: object, context: object) -> object:
        return self.reply


def import_floor(stack: contextlib.ExitStack, reply: object, component: Path, args: str, verse_id: int,
                 cache: Path) -> Callable[[], float]:
    """One sample (µs per call, as ``invocation``) of a component loop whose every import is answered at once."""
    runtime = stack.enter_context(ComponentRuntime(_Answering(reply), cache_dir=cache))  # type: ignore[arg-type]
    loop = runtime.load(component)

    def run() -> float:
        t0 = time.perf_counter()
        runtime.invoke(loop, verse_id, args)  # GuestError if a call failed
        return (time.perf_counter() - t0) * 1e6 / CALLS
    run()
    return run


def direct_component(stack: contextlib.ExitStack, channel: object, token: str, component: Path, args: str,
                     verse_id: int, cache: Path) -> Callable[[], float]:
    """One sample (µs per call) of a component loop whose imports go straight to the daemon's channel: gRPC
    from a component without the host's router (no link, no row), what the router is measured against."""
    runtime = stack.enter_context(ComponentRuntime(DirectRouter({"generator": channel}, token=token),  # type: ignore[dict-item]
                                                   cache_dir=cache))
    loop = runtime.load(component)

    def run() -> float:
        t0 = time.perf_counter()
        runtime.invoke(loop, verse_id, args)
        return (time.perf_counter() - t0) * 1e6 / CALLS
    run()
    return run


class _TimedTarget(Target):
    """A target that times its calls (``inner``) or, given no target, answers ``reply`` at once."""

    def __init__(self, target: Target | None, reply: object, inner: list[float]) -> None:
        self.target, self.reply, self.inner = target, reply, inner

    def unary(self, method, request, metadata, timeout_s):  # type: ignore[no-untyped-def]
        if self.target is None:
            return Reply(self.reply, 0.0)
        t0 = time.perf_counter()
        try:
            return self.target.unary(method, request, metadata, timeout_s)
        finally:
            self.inner.append(time.perf_counter() - t0)

    def stream(self, method, request, metadata, timeout_s):  # type: ignore[no-untyped-def]
        if self.target is None:
            return Reply(self.reply, 0.0)
        t0 = time.perf_counter()
        try:
            return (yield from self.target.stream(method, request, metadata, timeout_s))
        finally:
            self.inner.append(time.perf_counter() - t0)


class _TimedTransport(Transport):
    def __init__(self, own: Transport | None, reply: object, inner: list[float]) -> None:
        self.own, self.reply, self.inner = own, reply, inner

    def reach(self, provider):  # type: ignore[no-untyped-def]
        target = self.own.reach(provider)[0] if self.own is not None else None
        return _TimedTarget(target, self.reply, self.inner), 0.0

    def healthy(self, provider):  # type: ignore[no-untyped-def]
        return True

    def describe(self, provider):  # type: ignore[no-untyped-def]
        return host_pb.ProviderState(provider_id=provider)


def router_own_us(host: Host, request: object, context: CallContext, reply: object, reps: int) -> dict[str, float]:
    """The router's own time per call (links, metadata, deadline, recording: everything but the gRPC call),
    p50 µs: between real calls to the daemon, and in a loop of calls whose target answers at once."""
    execute = OPERATIONS[("generator", "execute")]
    inner: list[float] = []
    real = Router(host.router.links, host.registry, _TimedTransport(host.own, reply, inner))
    outer = timed(lambda: real.call(execute, request, context), reps, unit=1.0)  # type: ignore[arg-type]
    instant = Router(host.router.links, host.registry, _TimedTransport(None, reply, []))
    warm = timed(lambda: instant.call(execute, request, context), reps * 10, unit=1e6)  # type: ignore[arg-type]
    between = [(o - i) * 1e6 for o, i in zip(outer, inner, strict=True)]
    return {"between_real_calls": percentiles(between)["p50"], "warm": percentiles(warm)["p50"]}


def reply_lowering_us(runtime: ComponentRuntime, component: Path, reply: object, n: int = 5000) -> float:
    """µs to write one Execute reply as the result the WAT loop's import returns (the host's conversion into
    wasmtime's values, then their free), best of five rounds of ``n``."""
    loaded = runtime.load(component)
    instance = loaded.component.type.imports(runtime.engine)[wit_interface("generator", "0.1.0")].ty
    assert isinstance(instance, ComponentInstanceType)
    func = instance.exports(runtime.engine)["execute"].ty
    assert isinstance(func, FuncType)
    execute = OPERATIONS[("generator", "execute")]
    codec = ImportCodec(func, execute.request, execute.reply)
    results = (ffi.wasmtime_component_val_t * 1)()
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            codec.lower_ok(reply, results)  # type: ignore[arg-type]
            ffi.wasmtime_component_val_delete(ctypes.byref(results[0]))
        rounds.append((time.perf_counter() - t0) * 1e6 / n)
    return min(rounds)


def rows_per_second(host: Host, n: int = 50_000) -> float:
    request = pb.ExecuteRequest(instance_id="i-bench", code="1")
    reply = pb.ExecutionResult(value_json="1")
    host.registry.flush()
    t0 = time.perf_counter()
    for _ in range(n):
        host.registry.record(Invocation("morph", "execute", "bench", request, reply, 0.5, 0.001, time.time()))
    host.registry.flush()
    return n / (time.perf_counter() - t0)


def telemetry_on(tmp: str, reps: int, rows: dict[str, list[float]], routed_off: Callable[[], None]) -> int:
    """Turn traces and metrics on, start a second host (its daemon inherits the OTEL_* settings and traces
    too) and time a routed Execute on it, interleaved with the same call on the first host (its daemon
    traces nothing; this process's telemetry suspended around it). Spans go over OTLP to a receiver in
    another process that only counts them, as a collector on another machine would cost this one nothing
    more, in the SDK's default batches (up to 512 spans every 5 s, from a
    background thread, as in production): the timed calls pay for making and propagating spans and for the
    metrics, the batch's encoding runs beside them. Returns the spans the receiver got."""
    from worldrt import telemetry

    received: list[int] = []
    with collector(received):
        telemetry.start_tracing("worldrt-bench", flag=True)
        telemetry.serve_metrics("127.0.0.1:0")
        with Host(Path(tmp) / "on" / "world.duckdb", Path(tmp) / "on") as host:
            host.put_link(pb.LinkConfig(interfaces=["generator"], target_provider="morph"))
            iid = host.own.stub("morph").Start(pb.StartRequest(), metadata=(
                ("authorization", f"Bearer {host.supervisor.token}"),)).instance_id
            request = pb.ExecuteRequest(instance_id=iid, code="1")
            context = CallContext(verse_id=1, source="bench")
            execute = OPERATIONS[("generator", "execute")]

            def routed() -> None:
                host.router.call(execute, request, context)

            def off() -> None:
                with telemetry.suspended():
                    routed_off()

            timed(routed, 30, unit=1e6)
            telemetry.flush()
            for _ in range(10):
                rows.setdefault("routed Execute, telemetry off (paired with on)", []).extend(
                    timed(off, reps // 10, unit=1e6))
                rows.setdefault("routed Execute, telemetry on (traces + metrics)", []).extend(
                    timed(routed, reps // 10, unit=1e6))
        telemetry.stop_tracing()
    return received[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=15, help="invocations of each component (200 calls each)")
    ap.add_argument("--no-telemetry", action="store_true", help="skip the telemetry-on comparison")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "host.json"))
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}
    extra: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="worldrt-bench-host-") as tmp:
        with Host(Path(tmp) / "world.duckdb", Path(tmp)) as host, contextlib.ExitStack() as stack:
            host.put_link(pb.LinkConfig(interfaces=["generator"], target_provider="morph"))
            stub = host.own.stub("morph")
            md = (("authorization", f"Bearer {host.supervisor.token}"),)
            iid = stub.Start(pb.StartRequest(), metadata=md).instance_id
            request = pb.ExecuteRequest(instance_id=iid, code="1")
            context = CallContext(verse_id=1, source="bench")
            execute = OPERATIONS[("generator", "execute")]

            def direct() -> None:
                stub.Execute(request, metadata=md, timeout=30)

            def routed() -> None:
                host.router.call(execute, request, context)

            for fn in (direct, routed):
                timed(fn, 30, unit=1e6)
            # Interleave the two so machine noise falls on both alike.
            for _ in range(5):
                rows.setdefault("direct gRPC Execute", []).extend(timed(direct, args.reps // 5, unit=1e6))
                rows.setdefault("Execute via host router", []).extend(timed(routed, args.reps // 5, unit=1e6))

            extra["router_own_us_p50"] = router_own_us(host, request, context, stub.Execute(request, metadata=md),
                                                       args.reps)
            record = host.registry.record_call
            host.registry.record_call = lambda *_a, **_k: None  # type: ignore[method-assign]
            rows["router, recording off"] = timed(routed, args.reps, unit=1e6)
            host.registry.record_call = record  # type: ignore[method-assign]

            cpu: dict[str, list[float]] = {}

            def batch(fn: object) -> float:
                """Mean µs per call over ``CALLS`` calls of ``fn`` (one sample)."""
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(CALLS):
                    fn()  # type: ignore[operator]
                cpu.setdefault("direct", []).append((time.process_time() - c0) * 1e6 / CALLS)
                return (time.perf_counter() - t0) * 1e6 / CALLS

            def invocation(component_id: str, args: str, verse_id: int) -> object:
                """An invocation whose component makes ``CALLS`` provider calls: µs per call, as ``batch``."""
                request = host_pb.InvokeRequest(component_id=component_id, verse_id=verse_id, args=args)

                def run() -> float:
                    t0, c0 = time.perf_counter(), time.process_time()
                    outcome = host.invoke(request)
                    assert outcome.ok, outcome.value
                    cpu.setdefault(component_id, []).append((time.process_time() - c0) * 1e6 / CALLS)
                    return (time.perf_counter() - t0) * 1e6 / CALLS
                run()
                return run

            wat = host.load_component(host_pb.LoadComponentRequest(path=str(EXECUTE_LOOP)))
            channel = host.own.at(host.supervisor.address("morph")).channel
            answer = stub.Execute(request, metadata=md, timeout=30)
            floor = import_floor(stack, answer, EXECUTE_LOOP, iid, CALLS, Path(tmp) / "floor-cache")
            extra["reply_lowering_us"] = reply_lowering_us(
                stack.enter_context(ComponentRuntime(_Answering(answer), cache_dir=Path(tmp) / "floor-cache")),  # type: ignore[arg-type]
                EXECUTE_LOOP, answer)
            paths = {"direct gRPC Execute, mean of 200 (per call)": lambda: batch(direct),
                     "Execute from a WAT component via host (per call)": invocation(wat.component_id, iid, CALLS)}
            if (LOOP_COMPONENT / "app.py").exists():
                from worldrt.host.runtime import build_component

                out = Path(tmp) / "caller.wasm"
                build_component(LOOP_COMPONENT, out)
                info = host.load_component(host_pb.LoadComponentRequest(path=str(out)))
                caller_args = f'{{"instance_id": "{iid}", "calls": {CALLS}}}'
                paths["Execute from a Python component via host (per call)"] = invocation(
                    info.component_id, caller_args, 1)
                paths[PY_FLOOR] = import_floor(stack, answer, out, caller_args, 1, Path(tmp) / "floor-cache")
                paths[PY_DIRECT] = direct_component(stack, channel, host.supervisor.token, out, caller_args, 1,
                                                    Path(tmp) / "floor-cache")
            paths[WAT_FLOOR] = floor
            paths[WAT_DIRECT] = direct_component(stack, channel, host.supervisor.token, EXECUTE_LOOP, iid, CALLS,
                                                 Path(tmp) / "floor-cache")
            # Round-robin, one invocation (CALLS provider calls) of each per round: noise falls on all alike.
            cpu.clear()
            for _ in range(args.rounds):
                for name, sample in paths.items():
                    rows.setdefault(name, []).append(sample())  # type: ignore[operator]
            # This process's CPU per provider call (the daemon is another process): less swayed by the
            # machine's load than wall time.
            extra["cpu_us_per_call_p50"] = {
                "direct": percentiles(cpu["direct"])["p50"],
                "wat": percentiles(cpu[wat.component_id])["p50"],
                **({"python": percentiles(cpu[info.component_id])["p50"]} if "info" in locals() else {})}
            extra["rows_per_second"] = rows_per_second(host)
            if not args.no_telemetry:
                extra["spans_received"] = telemetry_on(tmp, args.reps, rows, routed)

    stats = {name: percentiles(samples) for name, samples in rows.items()}
    direct_p50 = stats["direct gRPC Execute"]["p50"]
    # A component's per-call figure is a mean over an invocation: it is compared with the direct call's mean.
    direct_mean = stats["direct gRPC Execute, mean of 200 (per call)"]["p50"]
    table = [[name, f"{s['p50']:.1f}", f"{s['p99']:.1f}", str(s["n"]),
              f"{s['p50'] - (direct_mean if '(per call)' in name else direct_p50):+.1f}"]
             for name, s in stats.items()]
    print_table("host overhead on a trivial Execute (µs)",
                ["path", "p50", "p99", "n", "added vs direct p50 (per call: vs its mean)"], table)
    routed_p50 = stats["Execute via host router"]["p50"]
    logging_share = (routed_p50 - stats["router, recording off"]["p50"]) / routed_p50 * 100
    added = {name: stats[row]["p50"] - direct_mean for name, row in (
        ("wat", "Execute from a WAT component via host (per call)"),
        ("python", "Execute from a Python component via host (per call)")) if row in stats}
    print(f"added by the host from a component: WAT {added.get('wat', float('nan')):+.1f} µs p50 (target <= 100 µs, issue 24), "
          f"Python {added.get('python', float('nan')):+.1f} µs p50 (target <= 200 µs); "
          f"recording's share of a routed call: {logging_share:.1f}% (target < 5%); "
          f"rows written: {extra['rows_per_second']:,.0f}/s (target >= 20,000/s)")
    print(f"this process's CPU per provider call (µs, p50): {extra['cpu_us_per_call_p50']}")
    import_floor_us = stats[WAT_FLOOR]["p50"]
    router_us = stats["Execute via host router"]["p50"] - direct_p50
    print(f"where a WAT component's call goes beyond direct gRPC: wasmtime-py's call into Python and the records' "
          f"conversion {import_floor_us:.0f} µs (the floor: its import answered at once), the router "
          f"{router_us:+.0f} µs (links, metadata, recording), the rest "
          f"{added.get('wat', float('nan')) - import_floor_us - router_us:+.0f} µs; of the floor, writing the reply "
          f"into wasmtime's values {extra['reply_lowering_us']:.1f} µs")
    extra["import_floor_us_p50"] = import_floor_us
    own = extra["router_own_us_p50"]
    print(f"the router's own code (all but the gRPC call), p50: {own['between_real_calls']:.1f} µs between real calls, "
          f"{own['warm']:.1f} µs in a loop whose target answers at once")
    if WAT_DIRECT in stats:
        bare = stats[WAT_DIRECT]["p50"] - direct_mean
        extra["wat_without_router_added_us_p50"] = bare
        print(f"the WAT component's calls straight to the daemon (no links, no rows) add {bare:+.0f} µs; the host's "
              f"router adds {added.get('wat', float('nan')) - bare:+.0f} µs to that")
    if PY_DIRECT in stats:
        bare = stats[PY_DIRECT]["p50"] - direct_mean
        extra["python_without_router_added_us_p50"] = bare
        print(f"the Python component's calls straight to the daemon add {bare:+.0f} µs; the host's router adds "
              f"{added.get('python', float('nan')) - bare:+.0f} µs to that")
    if PY_FLOOR in stats:
        extra["python_import_floor_us_p50"] = stats[PY_FLOOR]["p50"]
        print(f"a Python component's floor (its import answered at once: the guest's interpreter and its bindings, "
              f"then the host's conversion): {stats[PY_FLOOR]['p50']:.0f} µs a call; its calls added "
              f"{added.get('python', float('nan')) - stats[PY_FLOOR]['p50']:+.0f} µs beyond it")
    on_share = float("nan")
    if "routed Execute, telemetry on (traces + metrics)" in stats:
        on_share = (stats["routed Execute, telemetry on (traces + metrics)"]["p50"]
                    / stats["routed Execute, telemetry off (paired with on)"]["p50"] - 1) * 100
        print(f"telemetry on (traces + metrics) adds {on_share:+.1f}% to a routed Execute at p50, against the "
              f"same call with it off, interleaved (target <= 5%)")
    write_json(args.json, {"stats_us": stats, "added_us_p50": added, "logging_share_pct": logging_share,
                           "telemetry_on_share_pct": on_share, **extra})


if __name__ == "__main__":
    main()
