"""Component runtime benchmark: loading (cold compile vs the content-hash cache), instantiation, and what
a host import call costs, for the Python explorer component and for WAT components, in one run.

    python bench/components.py [--reps 500] [--json bench/results/components.json]

Prints a table (p50/p99) with each target and writes the figures as JSON. The explorer is built with
componentize-py first (its build time is reported too).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, write_json

from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import ComponentRuntime, GuestError, build_component
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "components" / "examples"
LOG_LOOP = Path(__file__).resolve().parent / "wat" / "log_loop.wat"


def cold_and_cached(router: DirectRouter, path: Path, workdir: Path, cold_reps: int,
                    cached_reps: int) -> tuple[list[float], list[float]]:
    """Load times (ms): each cold load compiles into an empty cache; cached loads are fresh runtimes
    (a new engine, as in a new host process) reading the one entry."""
    cold, cached = [], []
    for i in range(cold_reps):
        with ComponentRuntime(router, cache_dir=workdir / f"cold-{path.stem}-{i}") as rt:
            loaded = rt.load(path)
            assert not loaded.cached
            cold.append(loaded.load_ms)
    for _ in range(cached_reps):
        with ComponentRuntime(router, cache_dir=workdir / f"cold-{path.stem}-0") as rt:
            loaded = rt.load(path)
            assert loaded.cached
            cached.append(loaded.load_ms)
    return cold, cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "components.json"))
    args = ap.parse_args()
    reps = args.reps
    rows: dict[str, dict[str, float]] = {}
    extra: dict[str, object] = {}

    with tempfile.TemporaryDirectory(prefix="worldrt-bench-components-") as tmp, ProviderDaemon("morph") as morph:
        work = Path(tmp)
        router = DirectRouter({"generator": morph.channel}, timeout_s=60)
        built = build_component(EXAMPLES / "explorer", work / "explorer.wasm")
        extra["explorer_build_s"] = round(built.seconds, 2)
        extra["explorer_size_bytes"] = built.size_bytes

        cold, cached = cold_and_cached(router, built.path, work, cold_reps=2, cached_reps=10)
        rows["load explorer (Python): cold compile, ms"] = percentiles(cold)
        rows["load explorer (Python): cached, ms"] = percentiles(cached)
        cold, cached = cold_and_cached(router, EXAMPLES / "tiny.wat", work, cold_reps=10, cached_reps=50)
        rows["load tiny (WAT): cold compile, ms"] = percentiles(cold)
        rows["load tiny (WAT): cached, ms"] = percentiles(cached)

        with ComponentRuntime(router, cache_dir=work / "cache") as rt:
            explorer, tiny = rt.load(built.path), rt.load(EXAMPLES / "tiny.wat")
            log_loop, stop = rt.load(LOG_LOOP), rt.load(EXAMPLES / "stop.wat")

            def explorer_err() -> object:
                # `run` refuses these args at once: instantiate + one call, no provider calls.
                try:
                    rt.invoke_detailed(explorer, 1, "[]")
                except GuestError as exc:
                    return exc.invocation
                raise AssertionError("the explorer accepted args it should refuse")

            for _ in range(20):
                explorer_err()
            outcomes = [explorer_err() for _ in range(max(50, reps // 5))]
            rows["instantiate explorer (Python), µs"] = percentiles([o.instantiate_us for o in outcomes])
            rows["invoke explorer, no provider calls, ms"] = percentiles([o.call_ms for o in outcomes])

            quiet = rt.invoke_detailed
            for _ in range(100):
                quiet(tiny, 1, "x", on_log=lambda _l, _m: None)
            outcomes = [quiet(tiny, 1, "x", on_log=lambda _l, _m: None) for _ in range(reps * 4)]
            rows["instantiate tiny (WAT), µs"] = percentiles([o.instantiate_us for o in outcomes])

            calls = 2000
            sink = lambda _l, _m: None  # noqa: E731
            empty = [quiet(log_loop, 0, "x", on_log=sink).call_ms for _ in range(200)]
            looped = [quiet(log_loop, calls, "x", on_log=sink).call_ms for _ in range(max(20, reps // 25))]
            per_call = [(m - percentiles(empty)["p50"]) * 1000 / calls for m in looped]
            rows["host import call (log, no provider), µs"] = percentiles(per_call)
            rows["export call, no imports (WAT), µs"] = percentiles([m * 1000 for m in empty])

            # One provider call from WAT (generator.stop of an unknown instance: NOT_FOUND from morph).
            # Overhead = the component's call time minus the time inside the router's gRPC call.
            # The two are interleaved, so that the machine's drift falls on both alike.
            request = pb.InstanceRef(instance_id="i-bench-none")
            direct, through = [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                try:
                    morph.stub.Stop(request, timeout=10)
                except Exception:  # noqa: BLE001 - NOT_FOUND is the expected answer
                    pass
                direct.append((time.perf_counter() - t0) * 1000)
                try:
                    quiet(stop, 1, "i-bench-none")
                except GuestError as exc:
                    through.append(exc.invocation)
            rows["direct gRPC Stop (NOT_FOUND), ms"] = percentiles(direct)
            rows["same call from a WAT component, ms"] = percentiles([o.call_ms for o in through])
            outside = [(o.call_ms - o.provider_ms) * 1000 for o in through]
            rows["  of which outside the gRPC call, µs"] = percentiles(outside)
            # What the import itself adds: lift/lower of its records and the protobuf conversion.
            bare_call_us = percentiles(empty)["p50"] * 1000
            rows["  provider import overhead, µs"] = percentiles([u - bare_call_us for u in outside])

            summary = json.loads(rt.invoke(explorer, 1069, ""))
            full = [rt.invoke_detailed(explorer, 1069, "") for _ in range(5)]
            rows["explorer verse (12 provider calls), ms"] = percentiles([o.call_ms for o in full])
            rows["  of which in provider calls, ms"] = percentiles([o.provider_ms for o in full])
            extra["explorer_wev_1069"] = summary["wev"]
        router.close()

    targets = {
        "load explorer (Python): cached, ms": "< 200",
        "instantiate explorer (Python), µs": "≤ 2000",
        "instantiate tiny (WAT), µs": "≤ 100",
        "host import call (log, no provider), µs": "15–40 (wasmtime-py, ANCHORS)",
    }
    print_table("components", ["", "p50", "p99", "min", "n", "target"], [
        [name, f"{s['p50']:.3f}", f"{s['p99']:.3f}", f"{s['min']:.3f}", str(s["n"]), targets.get(name, "")]
        for name, s in rows.items()])
    for key, value in extra.items():
        print(f"{key}: {value}")
    write_json(args.json, {"rows": rows, "targets": targets, **extra})


if __name__ == "__main__":
    main()
