"""Load benchmark: one morph daemon and one host under many callers, beside a bare grpc.aio echo, in one run.

    python bench/load.py [--seconds 30] [--callers 64] [--idle 1000] [--invokers 16] [--json bench/results/load.json]

1. ``--callers`` concurrent callers (asyncio tasks on one grpc.aio channel) doing trivial Executes, each on
   its own morph instance, for ``--seconds``: throughput, p50/p99, errors, the daemon's RSS; then the same
   callers against a bare grpc.aio echo server (its own process) for as long, for the ratio; then against
   the floor of a sandboxed call: the same echo, whose handler first makes one round trip to one of
   ``--callers`` sandboxed Python processes (function workers), with the CPU each side used per call.
2. ``--idle`` live idle instances in one daemon, started one after another (0.15 s apart, so the warm pool
   refills as between real requests): Start latency around the 10th and at the last, and the private
   memory (USS, PSS) per instance.
3. ``--invokers`` concurrent component invocations through one host (bench/wat/execute_loop.wat, 20
   provider calls each, each invoker on its own instance) for ``--seconds``: invocations/s, p50/p99, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import percentiles, print_table, write_json
from branching import ECHO_SERVER, member_pids, smaps_private_kib

from tests.support.processes import processes_under
from worldrt.providers.testing import ProviderDaemon, wait_serving
from worldrt.v1 import host_pb, pb, rpc

ROOT = Path(__file__).resolve().parent.parent
EXECUTE_LOOP = ROOT / "bench" / "wat" / "execute_loop.wat"
CALLS_PER_INVOCATION = 20
# Between idle Starts, as between real requests: the daemon's warm pool refills (bench/branching.py does the same).
START_PACE_S = 0.15


# The floor of a sandboxed call: a bare grpc.aio echo whose handler first makes one round trip to a sandboxed
# Python process (a function worker returning 1; 64 of them, one per caller). No instances, no engine.
SANDBOXED_ECHO = r"""
import asyncio, sys, tempfile
from pathlib import Path
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from worldrt.providers.sandbox import WorkerPool

async def main(address, workers, state):
    pool = WorkerPool(Path(state), name="floor", preload=(), ready_workers=0)
    await pool.open()
    try:
        async with pool.lease(workers, "def one():\n    return 1\n") as lease:
            async def echo(request, context):
                await lease.call("one", [], 30)
                return request
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
                "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
            hs = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(hs, server)
            server.add_insecure_port(address)
            await server.start()
            await hs.set("", health_pb2.HealthCheckResponse.SERVING)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(15, stop.set)
            await stop.wait()
            await server.stop(None)
    finally:
        await pool.close()
with tempfile.TemporaryDirectory(prefix="worldrt-bench-floor-") as state:
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), state))
"""


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used (those that are gone count 0)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def drive(call: Callable[[int], Awaitable[object]], callers: int, seconds: float) -> dict[str, object]:
    """``callers`` tasks calling ``call(i)`` back to back for ``seconds``: latencies (ms), errors by code."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    stop_at = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await call(i)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    wall = time.perf_counter() - started
    return {"calls_per_s": len(latencies) / wall, "latency_ms": percentiles(latencies), "errors": dict(errors),
            "calls": len(latencies)}


def concurrent_executes(daemon: ProviderDaemon, workdir: Path, callers: int, seconds: float) -> dict[str, object]:
    stub = daemon.stub
    md = daemon.metadata
    instances = [stub.Start(pb.StartRequest(), metadata=md, timeout=120).instance_id for _ in range(callers)]
    echo_address = f"unix:{workdir / 'echo.sock'}"
    echo_proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, echo_address])
    floor_address = f"unix:{workdir / 'floor.sock'}"
    floor_proc = subprocess.Popen([sys.executable, "-c", SANDBOXED_ECHO, floor_address, str(callers)])
    assert daemon.proc is not None
    daemon_pid = daemon.proc.pid
    sandboxes = sorted(set().union(*(member_pids(daemon_pid, iid) for iid in instances)))
    try:
        wait_serving(echo_address, proc=echo_proc)
        wait_serving(floor_address, timeout_s=120, proc=floor_proc)

        async def run() -> tuple[dict[str, object], dict[str, object], dict[str, object], float]:
            async with grpc.aio.insecure_channel(daemon.address) as channel, \
                    grpc.aio.insecure_channel(echo_address) as echo_channel, \
                    grpc.aio.insecure_channel(floor_address) as floor_channel:
                aio = rpc.WorldRuntimeStub(channel)
                requests = [pb.ExecuteRequest(instance_id=iid, code="1") for iid in instances]

                def execute(i: int) -> Awaitable[object]:
                    return aio.Execute(requests[i], metadata=md, timeout=30)
                echo = echo_channel.unary_unary("/bench.Echo/Echo")
                payload = pb.ExecuteRequest(instance_id="i-000000000000", code="1").SerializeToString()
                await drive(execute, callers, 1.0)  # warm-up
                before = (cpu_s([os.getpid()]), cpu_s([daemon_pid]), cpu_s(sandboxes))
                executes = await drive(execute, callers, seconds)
                after = (cpu_s([os.getpid()]), cpu_s([daemon_pid]), cpu_s(sandboxes))
                executes["cpu_us_per_call"] = {  # where the machine's time went, per call
                    who: (a - b) * 1e6 / max(1, executes["calls"])  # type: ignore[call-overload]
                    for who, a, b in zip(("caller", "daemon", "sandboxes"), after, before, strict=True)}
                rss = rss_mib(daemon_pid)
                await drive(lambda _i: echo(payload, timeout=30), callers, 1.0)
                before = (cpu_s([os.getpid()]), cpu_s([echo_proc.pid]))
                echoes = await drive(lambda _i: echo(payload, timeout=30), callers, seconds)
                after = (cpu_s([os.getpid()]), cpu_s([echo_proc.pid]))
                echoes["cpu_us_per_call"] = {
                    who: (a - b) * 1e6 / max(1, echoes["calls"])  # type: ignore[call-overload]
                    for who, a, b in zip(("caller", "server"), after, before, strict=True)}
                sandboxed = floor_channel.unary_unary("/bench.Echo/Echo")
                floor_sandboxes = sorted(processes_under(floor_address) - {floor_proc.pid})
                await drive(lambda _i: sandboxed(payload, timeout=30), callers, 1.0)
                before = (cpu_s([os.getpid()]), cpu_s([floor_proc.pid]), cpu_s(floor_sandboxes))
                floors = await drive(lambda _i: sandboxed(payload, timeout=30), callers, seconds)
                after = (cpu_s([os.getpid()]), cpu_s([floor_proc.pid]), cpu_s(floor_sandboxes))
                floors["cpu_us_per_call"] = {
                    who: (a - b) * 1e6 / max(1, floors["calls"])  # type: ignore[call-overload]
                    for who, a, b in zip(("caller", "server", "sandboxes"), after, before, strict=True)}
                return executes, echoes, floors, rss
        executes, echoes, floors, rss = asyncio.run(run())
    finally:
        for proc in (echo_proc, floor_proc):
            proc.terminate()
        for proc in (echo_proc, floor_proc):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for iid in instances:
            stub.Stop(pb.InstanceRef(instance_id=iid), metadata=md, timeout=60)
    return {"executes": executes, "echo": echoes, "sandboxed_echo": floors, "daemon_rss_mib": rss,
            "ratio_to_echo": executes["calls_per_s"] / echoes["calls_per_s"],  # type: ignore[operator]
            "floor_ratio_to_echo": floors["calls_per_s"] / echoes["calls_per_s"],  # type: ignore[operator]
            "p99_over_p50": {name: r["latency_ms"]["p99"] / r["latency_ms"]["p50"]  # type: ignore[index]
                             for name, r in (("executes", executes), ("echo", echoes), ("sandboxed_echo", floors))}}


def idle_instances(daemon: ProviderDaemon, count: int) -> dict[str, object]:
    stub, md = daemon.stub, daemon.metadata
    assert daemon.proc is not None
    starts: list[float] = []
    instances: list[str] = []
    errors: collections.Counter[str] = collections.Counter()
    rss_before = rss_mib(daemon.proc.pid)
    try:
        while len(instances) < count:
            time.sleep(START_PACE_S)
            t0 = time.perf_counter()
            try:
                instances.append(stub.Start(pb.StartRequest(), metadata=md, timeout=120).instance_id)
            except grpc.RpcError as exc:
                errors[exc.code().name] += 1  # type: ignore[attr-defined]
                if sum(errors.values()) > 20:
                    break
                continue
            starts.append((time.perf_counter() - t0) * 1000)
        sampled = instances[:: max(1, len(instances) // 50)]
        uss = pss = processes = 0
        for iid in sampled:
            for pid in member_pids(daemon.proc.pid, iid):
                u, p = smaps_private_kib(pid)
                uss, pss, processes = uss + u, pss + p, processes + 1
        # Start latency once the warm pool is drained (from the 10th) beside the last ones.
        early, late = starts[9:29], starts[-20:]
        result = {"live": len(instances), "errors": dict(errors),
                  "start_ms_around_10th": percentiles(early), "start_ms_last_20": percentiles(late),
                  "late_over_early_p50": percentiles(late)["p50"] / percentiles(early)["p50"] if early else None,
                  "uss_per_instance_mib": uss / max(1, len(sampled)) / 1024,
                  "pss_per_instance_mib": pss / max(1, len(sampled)) / 1024,
                  "processes_per_instance": processes / max(1, len(sampled)),
                  "daemon_rss_mib_before": rss_before, "daemon_rss_mib_after": rss_mib(daemon.proc.pid)}
    finally:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda iid: stub.Stop(pb.InstanceRef(instance_id=iid), metadata=md, timeout=120),
                          instances))
    return result


def concurrent_invocations(workdir: Path, invokers: int, seconds: float) -> dict[str, object]:
    from worldrt.host import Host

    with Host(workdir / "world.duckdb", workdir) as host:
        host.put_link(pb.LinkConfig(interfaces=["generator"], target_provider="morph"))
        stub = host.own.stub("morph")
        md = (("authorization", f"Bearer {host.supervisor.token}"),)
        instances = [stub.Start(pb.StartRequest(), metadata=md, timeout=120).instance_id for _ in range(invokers)]
        info = host.load_component(host_pb.LoadComponentRequest(path=str(EXECUTE_LOOP)))
        latencies: list[float] = []
        errors: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds

        def invoker(i: int) -> None:
            request = host_pb.InvokeRequest(component_id=info.component_id, verse_id=CALLS_PER_INVOCATION,
                                            args=instances[i])
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    outcome = host.invoke(request)
                    failure = "" if outcome.ok else outcome.value
                except Exception as exc:  # noqa: BLE001 - counted and reported by kind
                    failure = type(exc).__name__
                with lock:
                    if failure:
                        errors[failure[:80]] += 1
                    else:
                        latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=invokers) as pool:
            list(pool.map(invoker, range(invokers)))
        wall = time.perf_counter() - started
        for iid in instances:
            stub.Stop(pb.InstanceRef(instance_id=iid), metadata=md, timeout=60)
        host.registry.flush()
    return {"invocations_per_s": len(latencies) / wall,
            "provider_calls_per_s": len(latencies) * CALLS_PER_INVOCATION / wall,
            "latency_ms": percentiles(latencies), "errors": dict(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--callers", type=int, default=64)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--invokers", type=int, default=16)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "load.json"))
    args = ap.parse_args()
    out: dict[str, object] = {"seconds": args.seconds, "callers": args.callers, "idle": args.idle,
                              "invokers": args.invokers}
    with tempfile.TemporaryDirectory(prefix="worldrt-bench-load-") as tmp:
        work = Path(tmp)
        with ProviderDaemon("morph", state_dir=work / "morph") as daemon:
            out["concurrent_executes"] = load = concurrent_executes(daemon, work, args.callers, args.seconds)
            out["idle_instances"] = idle = idle_instances(daemon, args.idle)
        out["concurrent_invocations"] = inv = concurrent_invocations(work / "host", args.invokers, args.seconds)

    ex, echo = load["executes"], load["echo"]  # type: ignore[index]
    rows = [
        [f"{args.callers} callers: trivial Execute", f"{ex['calls_per_s']:,.0f}/s", f"{ex['latency_ms']['p50']:.2f}",
         f"{ex['latency_ms']['p99']:.2f}", str(sum(ex["errors"].values())),
         f"{load['ratio_to_echo']:.0%} of echo (target >= 60%), errors target 0"],
        [f"{args.callers} callers: bare grpc.aio echo", f"{echo['calls_per_s']:,.0f}/s",
         f"{echo['latency_ms']['p50']:.2f}", f"{echo['latency_ms']['p99']:.2f}", str(sum(echo["errors"].values())),
         ""],
        ["Start, around the 10th live instance", "", f"{idle['start_ms_around_10th']['p50']:.2f}",  # type: ignore[index]
         f"{idle['start_ms_around_10th']['p99']:.2f}", "", ""],  # type: ignore[index]
        [f"Start, at the last of {idle['live']} live", "", f"{idle['start_ms_last_20']['p50']:.2f}",  # type: ignore[index]
         f"{idle['start_ms_last_20']['p99']:.2f}", str(sum(idle["errors"].values())),  # type: ignore[index, union-attr]
         f"{idle['late_over_early_p50']:.2f}x the 10th (target <= 1.5x)"],
        [f"{args.invokers} concurrent component invocations ({CALLS_PER_INVOCATION} calls each)",
         f"{inv['invocations_per_s']:,.1f}/s", f"{inv['latency_ms']['p50']:.1f}",  # type: ignore[index]
         f"{inv['latency_ms']['p99']:.1f}", str(sum(inv["errors"].values())),  # type: ignore[index, union-attr]
         f"{inv['provider_calls_per_s']:,.0f} provider calls/s"],
    ]
    print_table("load (latencies in ms)", ["what", "throughput", "p50", "p99", "errors", "note"], rows)
    print(f"CPU µs per call: Execute {ex['cpu_us_per_call']}; echo {echo['cpu_us_per_call']}")
    tails: dict[str, float] = load["p99_over_p50"]  # type: ignore[assignment]
    floor = load["sandboxed_echo"]  # type: ignore[index]
    print(f"floor: the same echo with one round trip to a sandboxed Python process in each call (no instances, no "
          f"engine) serves {floor['calls_per_s']:,.0f}/s, {load['floor_ratio_to_echo']:.0%} of echo (the Execute: "
          f"{load['ratio_to_echo']:.0%}); CPU µs per call {floor['cpu_us_per_call']}; p99/p50: Execute "
          f"{tails['executes']:.1f}x, echo {tails['echo']:.1f}x, sandboxed echo {tails['sandboxed_echo']:.1f}x "
          f"(target <= 3x)")
    print(f"morph daemon RSS under {args.callers} callers: {load['daemon_rss_mib']:.0f} MiB; with {idle['live']} idle "
          f"instances: {idle['daemon_rss_mib_after']:.0f} MiB; per idle instance: USS "
          f"{idle['uss_per_instance_mib']:.2f} MiB, PSS {idle['pss_per_instance_mib']:.2f} MiB "
          f"({idle['processes_per_instance']:.1f} processes)")
    write_json(args.json, out)


if __name__ == "__main__":
    main()
