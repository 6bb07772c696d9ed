"""Lattice benchmark: what crossing machines over NATS costs, and what replicas and one registry give.

    sudo .venv/bin/python bench/lattice.py [--reps 300] [--json bench/results/lattice.json]

Root only (it makes network namespaces: a hub with nats-server, machines b and c, a watcher on a; this
process is one more machine). The lattice runs as it must off loopback: each machine with its own nkey
identity and permissions, TLS to the hub (tests/host/lattice/secure.py); this process calls as the
caller identity t, and puts links and feeds the rows benchmark as admin. One run, side by side:
* a direct gRPC Execute from this machine to a morph daemon on b over TCP (the bare baseline), and the
  same Execute through the lattice (NATS to b's bridge, then b's unix socket);
* calls per second of a waiting workload (modal Executes that sleep, on instances started beforehand on
  each replica: an instance runs one call at a time, so instances are a replica's capacity) on one
  replica's instances (b) and on both replicas' (b and c), with the same callers; beside it the ideal
  (instances / sleep) and the CPU each process used (this caller, each host with its bridge, its provider
  daemon and instances, the hub's nats-server), so a shortfall names the busy process;
* the longest gap without an answer, and failed calls, while replica c is killed with SIGKILL mid-load;
* link propagation: a put in the links bucket until a watcher on machine a sees it;
* rows per second from the invocations stream into DuckDB by the registry's consumer, beside its two floors
  in the same run: a bare nats-py fetch and acknowledgement of the same messages (no DuckDB) and a bare
  ``Registry.ingest`` of the same rows (DuckDB, no NATS), then both in one process as a registry runs them
  (one interpreter: the loop's pulls and acknowledgements and the writer thread share it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import itertools

import grpc
from _report import percentiles, print_table, timed, write_json
from nats.js import api

from tests.host.lattice.netns import Topology
from worldrt.host.lattice import Caller, Ingest, Lattice, LatticeOptions, load_credential
from worldrt.host.lattice._ingest import BATCH
from worldrt.host.registry import Registry, parse_record
from worldrt.host.routing import METHODS
from worldrt.providers import open_channel
from worldrt.providers.testing import wait_serving
from worldrt.v1 import pb, rpc

ROOT = Path(__file__).resolve().parent.parent
ECHO = """
import sys
from worldrt.host.lattice import Lattice, LatticeOptions, load_credential
lattice = Lattice(LatticeOptions(sys.argv[1], creds=load_credential(sys.argv[2]), tls_ca=sys.argv[3]))
async def serve():
    async def echo(msg):
        await msg.respond(msg.data)
    await lattice.nc.subscribe("bench.echo", cb=echo)
    await lattice.nc.flush()
    print("ready", flush=True)
    import asyncio
    await asyncio.Event().wait()
lattice.run(serve(), None)
"""
HAND_OFF = "a caller's hand-off to the lattice's loop and back, no I/O"
# The daemon's own share of a call: Execute timed from inside b, on b's own stack (what the bridge's second
# hop costs, less its unix socket being a little cheaper than TCP on loopback).
LOCAL = """
import statistics, sys, time
import grpc
from worldrt.v1 import pb, rpc
stub = rpc.WorldRuntimeStub(grpc.insecure_channel(sys.argv[1]))
iid = stub.Start(pb.StartRequest(), timeout=30).instance_id
request = pb.ExecuteRequest(instance_id=iid, code="1")
samples = []
for i in range(int(sys.argv[2]) + 30):
    t0 = time.perf_counter()
    stub.Execute(request, timeout=30)
    if i >= 30:
        samples.append((time.perf_counter() - t0) * 1e6)
print(statistics.median(samples))
"""
WATCH = """
import sys, time
from worldrt.host.lattice import Lattice, LatticeOptions, load_credential
lattice = Lattice(LatticeOptions(sys.argv[1], creds=load_credential(sys.argv[2]), tls_ca=sys.argv[3]))
async def watch():
    kv = await lattice.js.key_value("WORLDRT_LINKS_default")
    watcher = await kv.watchall()
    while True:
        entry = await watcher.updates(timeout=60)
        print("ready" if entry is None else f"{entry.key} {time.time()}", flush=True)
lattice.run(watch(), None)
"""


def call(lattice: Lattice, caller: Caller, provider: str, rpc_name: str, request: object,
         replica: str | None = None, timeout_s: float = 60.0) -> tuple[grpc.StatusCode, bytes, str]:
    bound = (replica, "") if replica else None
    answer = lattice.run(caller.call(provider, METHODS[rpc_name], request.SerializeToString(), [],  # type: ignore[attr-defined]
                                     timeout_s, bound=bound), timeout_s + 20)
    return answer.code, answer.data, answer.replica


def start_instances(lattice: Lattice, caller: Caller, replica: str, count: int) -> list[tuple[str, str]]:
    """``count`` modal instances started on ``replica`` beforehand: (replica, instance id) each."""
    found = []
    for _ in range(count):
        code, data, _ = call(lattice, caller, "modal", "Start", pb.StartRequest(), replica=replica)
        assert code == grpc.StatusCode.OK, data
        found.append((replica, pb.Instance.FromString(data).instance_id))
    return found


def throughput(lattice: Lattice, caller: Caller, instances: list[tuple[str, str]], calls: int, concurrency: int,
               sleep_s: float) -> float:
    """Calls per second of Executes that only wait ``sleep_s``, caller i on instance i mod len(instances), each
    call to the replica holding its instance (an instance runs one call at a time: instances are capacity)."""
    code = f"import time\ntime.sleep({sleep_s})\n"

    async def run() -> float:
        left = [calls]

        async def worker(i: int) -> None:
            replica, iid = instances[i % len(instances)]
            request = pb.ExecuteRequest(instance_id=iid, code=code, language="python", timeout_ms=30_000)
            while left[0] > 0:
                left[0] -= 1
                answer = await caller.call("modal", METHODS["Execute"], request.SerializeToString(), [], 60,
                                           bound=(replica, iid))
                assert answer.code == grpc.StatusCode.OK, answer.message

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return calls / (time.perf_counter() - t0)

    return lattice.run(run(), timeout_s=600)


def _cpu_ticks(pid: int) -> tuple[int, int, str] | None:
    """(CPU ticks used, parent pid, name) of ``pid`` from /proc, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            head, tail = f.read().rsplit(")", 1)
        fields = tail.split()
        return int(fields[11]) + int(fields[12]), int(fields[1]), head.split("(", 1)[1]
    except (OSError, IndexError, ValueError):
        return None


def process_roles(topology: Topology, hosts: dict[str, int]) -> dict[int, str]:
    """Every process of the run by its role: this bench (the caller), each host (its bridge is in it), each
    host's provider daemons (its children) and their instances (deeper), and the hub's nats-server."""
    parents = {pid: info[1] for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
               if (info := _cpu_ticks(pid)) is not None}
    roles = {os.getpid(): "bench process (the caller, its lattice loop)"}
    for machine, root in hosts.items():
        roles[root] = f"host {machine} (bridge, supervisor)"
        for pid in parents:
            depth, up = 0, pid
            while up in parents and up != root and depth < 12:
                up, depth = parents[up], depth + 1
            if up == root and pid != root:
                roles[pid] = f"host {machine}: provider daemon" if depth == 1 else f"host {machine}: instances"
    for proc in topology.procs:
        if "lattice" in proc.argv:
            for pid in parents:
                if parents.get(pid) == proc.proc.pid or pid == proc.proc.pid:
                    name = (_cpu_ticks(pid) or (0, 0, "?"))[2]
                    roles[pid] = "hub: nats-server" if "nats" in name else "hub: lattice serve"
    return roles


def cpu_shares(roles: dict[int, str], fn: Callable[[], float]) -> tuple[float, dict[str, float]]:
    """``fn()``'s result, and the CPU each role used while it ran, in % of one CPU."""
    before = {pid: (_cpu_ticks(pid) or (0, 0, ""))[0] for pid in roles}
    t0 = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    shares: dict[str, float] = {}
    for pid, role in roles.items():
        after = _cpu_ticks(pid)
        if after is not None:
            shares[role] = shares.get(role, 0.0) + (after[0] - before[pid]) / os.sysconf("SC_CLK_TCK") / wall * 100
    return result, shares


def _repeat(fn: Callable[[], object], times: int) -> float:
    """Seconds ``times`` calls of ``fn`` took."""
    t0 = time.perf_counter()
    for _ in range(times):
        fn()
    return time.perf_counter() - t0


def kill_gap(lattice: Lattice, caller: Caller, topology: Topology, victim: object, seconds: float,
             concurrency: int) -> dict[str, float]:
    request = pb.ExecuteRequest(code="1", language="python", timeout_ms=30_000)
    done: list[float] = []
    failed = [0]
    latencies: list[float] = []

    async def run() -> None:
        end = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < end:
                t0 = time.monotonic()
                answer = await caller.call("modal", METHODS["Execute"], request.SerializeToString(), [], 60)
                if answer.code != grpc.StatusCode.OK:
                    failed[0] += 1
                latencies.append(time.monotonic() - t0)
                done.append(time.monotonic())

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    killer = threading.Timer(seconds / 3, victim.kill)  # type: ignore[attr-defined]
    started = time.monotonic()
    killer.start()
    lattice.run(run(), timeout_s=seconds + 120)
    killer.join()
    stamps = [started, *sorted(done)]
    gap = max(b - a for a, b in itertools.pairwise(stamps))
    return {"calls": len(done), "failed": failed[0], "longest_gap_ms": gap * 1000,
            "slowest_call_ms": max(latencies) * 1000}


def link_propagation(lattice: Lattice, topology: Topology, reps: int) -> list[float]:
    """``lattice``: admin's (only admin writes links); the watcher on a reads them as host a."""
    watcher = subprocess.Popen(["ip", "netns", "exec", topology.ns("a"), sys.executable, "-c", WATCH, topology.url,
                                str(topology.ids.cred("a")), str(topology.ids.ca)], stdout=subprocess.PIPE, text=True,
                               env=topology.env("a"))
    try:
        assert watcher.stdout is not None
        while watcher.stdout.readline().strip() != "ready":
            pass
        kv = lattice.run(lattice.js.key_value("WORLDRT_LINKS_default"))
        samples = []
        for i in range(reps):
            key = f"bench/generator/p{i}"
            put_at = time.time()
            lattice.run(kv.put(key, b'{"link_id": "x", "target_provider": "modal", "interfaces": ["generator"]}'))
            seen_key, seen_at = watcher.stdout.readline().split()
            assert seen_key == key
            samples.append((float(seen_at) - put_at) * 1000)
            lattice.run(kv.delete(key))
            watcher.stdout.readline()
        return samples
    finally:
        watcher.kill()
        watcher.wait()


def rows_per_second(topology: Topology, n: int, tmp: Path) -> dict[str, float]:
    """The registry's rows/s from the stream into DuckDB, and its floors on the same records: a bare pull and
    acknowledgement of each (no DuckDB), a bare ``Registry.ingest`` in batches (no NATS)."""
    source = Registry.open(tmp / "source.duckdb")
    records: list[tuple[str, bytes]] = []
    source.sink = lambda kind, ident, data: records.append((ident, data))
    request, reply = pb.ExecuteRequest(instance_id="i-bench", code="1"), pb.ExecutionResult(value_json="1")
    for _ in range(n):
        source.record_call("modal", "execute", "bench", request, reply, 0.5, 0.001, time.time())
    source.close()
    # Admin may do everything on every lattice of the server: here a lattice of its own, "rows".
    admin = dataclasses.replace(load_credential(topology.ids.cred("admin")), lattice="rows")
    lattice = Lattice(LatticeOptions(topology.url, name="rows", creds=admin, tls_ca=str(topology.ids.ca)))
    try:
        from worldrt.host.lattice._member import ensure_streams
        from worldrt.host.lattice._pull import Puller
        from worldrt.host.lattice._wire import H_HOST, invocations_subject

        async def publish() -> None:
            await ensure_streams(lattice)
            for ident, data in records:
                await lattice.nc.publish(invocations_subject("rows", "bench"), data,
                                         headers={"Nats-Msg-Id": ident, H_HOST: "bench"})
            await lattice.nc.flush()
            info = await lattice.js.stream_info("WORLDRT_INVOCATIONS_rows")
            while info.state.messages < n:
                await asyncio.sleep(0.05)
                info = await lattice.js.stream_info("WORLDRT_INVOCATIONS_rows")

        lattice.run(publish(), timeout_s=300)

        rows = [row for _, data in records if (row := parse_record(data)) is not None]

        async def pull_and_ack(durable: str, write: Callable[[list[Any]], None] | None = None) -> float:
            """Messages/s of a bare pull and acknowledgement of each (as the registry pulls). With ``write``, the
            two floors in one process, as a registry runs them: each batch's rows (parsed beforehand) go to
            ``write`` on a thread while the next batch is pulled and acknowledged on the loop."""
            stream = "WORLDRT_INVOCATIONS_rows"
            await lattice.js.add_consumer(stream, api.ConsumerConfig(
                durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=-1))
            puller = Puller(lattice.nc, stream, durable)
            await puller.start()
            loop = asyncio.get_running_loop()
            writing: asyncio.Future[None] | None = None
            got, t0 = 0, time.perf_counter()
            while got < n:
                batch = await puller.fetch(BATCH, timeout=5)
                for msg in batch:
                    await msg.ack()
                if write is not None:
                    if writing is not None:
                        await writing
                    writing = loop.run_in_executor(None, write, rows[got:got + len(batch)])
                got += len(batch)
            if writing is not None:
                await writing
            await lattice.nc.flush()
            rate = n / (time.perf_counter() - t0)
            await puller.unsubscribe()
            await lattice.js.delete_consumer(stream, durable)
            return rate

        pull_rate = lattice.run(pull_and_ack("bench-floor"), timeout_s=300)
        both = Registry.open(tmp / "both.duckdb")
        both_rate = lattice.run(pull_and_ack("bench-both", both.ingest), timeout_s=300)
        both.close()
        bare = Registry.open(tmp / "bare.duckdb")
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            bare.ingest(rows[start:start + BATCH])
        duckdb_rate = n / (time.perf_counter() - t0)
        bare.close()
        registry = Registry.open(tmp / "one.duckdb")
        t0 = time.perf_counter()
        ingest = Ingest(lattice, registry)
        while ingest.ingested < n:
            time.sleep(0.005)
        rate = n / (time.perf_counter() - t0)
        ingest.stop()
        count = registry.query("SELECT count(*) AS n FROM provider_invocations")[0]["n"]
        registry.close()
        assert count == n, count
        return {"rows_per_second": rate, "bare_pull_ack_per_second": pull_rate,
                "bare_registry_ingest_per_second": duckdb_rate, "bare_both_in_one_process_per_second": both_rate}
    finally:
        lattice.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "lattice.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/lattice.py makes network namespaces: run it as root")
    tmp = Path(tempfile.mkdtemp(prefix="worldrt-bench-lattice-"))
    topology = Topology(tmp, ["a", "b", "c"], {"a": "", "b": "morph,modal", "c": "modal"})
    lattice: Lattice | None = None
    admin: Lattice | None = None
    results: dict[str, object] = {}
    try:
        topology.serve_lattice()
        b = topology.host("b", "morph,modal")
        c = topology.host("c", "modal")
        direct_address = f"{topology.address(11)}:50061"
        daemon = topology.run(topology.ns("b"), [sys.executable, "-m", "worldrt.host.cli", "provider", "serve", "morph",
                                                 "--listen", direct_address, "--insecure"], "direct-morph",
                              cwd=tmp / "b")
        wait_serving(direct_address, timeout_s=60, proc=daemon.proc, log_path=daemon.log_path)
        lattice = topology.connect(client="bench")
        admin = topology.connect("admin", "bench-admin")
        caller = lattice.run(Caller.open(lattice))

        # 1. one Execute: direct gRPC across namespaces, and through the lattice.
        channel = open_channel(direct_address)
        stub = rpc.WorldRuntimeStub(channel)
        direct_iid = stub.Start(pb.StartRequest(), timeout=30).instance_id
        code, data, _ = call(lattice, caller, "morph", "Start", pb.StartRequest())
        assert code == grpc.StatusCode.OK
        lattice_iid = pb.Instance.FromString(data).instance_id
        direct_request = pb.ExecuteRequest(instance_id=direct_iid, code="1")
        lattice_request = pb.ExecuteRequest(instance_id=lattice_iid, code="1")

        # The floor: a bare request/reply between two admin connections (hosts may not use other subjects).
        echo = subprocess.Popen(["ip", "netns", "exec", topology.ns("b"), sys.executable, "-c", ECHO, topology.url,
                                 str(topology.ids.cred("admin")), str(topology.ids.ca)], stdout=subprocess.PIPE,
                                text=True, env=topology.env("admin"))
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"

        def direct() -> None:
            stub.Execute(direct_request, timeout=30)

        def bare_nats() -> None:
            admin.run(admin.nc.request("bench.echo", b"x", timeout=5))  # type: ignore[union-attr]

        def via_lattice() -> None:
            assert call(lattice, caller, "morph", "Execute", lattice_request)[0] == grpc.StatusCode.OK  # type: ignore[arg-type]

        async def nothing() -> None:
            pass

        def hand_off() -> None:
            lattice.run(nothing())

        samples: dict[str, list[float]] = {}
        for fn in (direct, bare_nats, via_lattice, hand_off):
            timed(fn, 30, unit=1e6)
        for _ in range(5):
            samples.setdefault("direct gRPC Execute (namespace to namespace)", []).extend(
                timed(direct, args.reps // 5, unit=1e6))
            samples.setdefault("bare NATS request/reply, no bridge (floor)", []).extend(
                timed(bare_nats, args.reps // 5, unit=1e6))
            samples.setdefault("Execute through the lattice", []).extend(timed(via_lattice, args.reps // 5, unit=1e6))
            samples.setdefault(HAND_OFF, []).extend(
                timed(hand_off, args.reps // 5, unit=1e6))
        # The CPU each process spends on a call, by role: what the lattice's added time is made of.
        roles = process_roles(topology, {"b": b.proc.pid, "c": c.proc.pid})
        cpu_per_call: dict[str, dict[str, float]] = {}
        for name, fn in (("direct gRPC Execute", direct), ("Execute through the lattice", via_lattice)):
            wall, shares = cpu_shares(roles, lambda fn=fn: _repeat(fn, 2 * args.reps))  # type: ignore[misc]
            cpu_per_call[name] = {role: share / 100 * wall * 1e6 / (2 * args.reps)
                                  for role, share in sorted(shares.items(), key=lambda kv: -kv[1]) if share > 0}
        results["cpu_us_per_call"] = cpu_per_call
        local = subprocess.run(["ip", "netns", "exec", topology.ns("b"), sys.executable, "-c", LOCAL, direct_address,
                                str(args.reps)], capture_output=True, text=True, env=topology.env("admin"), timeout=300)
        assert local.returncode == 0, local.stderr
        results["execute_inside_b_us_p50"] = float(local.stdout.strip())
        channel.close()
        echo.kill()
        echo.wait()
        stats = {name: percentiles(s) for name, s in samples.items()}
        base = stats["direct gRPC Execute (namespace to namespace)"]["p50"]
        print_table("one Execute between machines (µs)", ["path", "p50", "p99", "n", "added vs direct p50"],
                    [[name, f"{s['p50']:.0f}", f"{s['p99']:.0f}", str(s["n"]), f"{s['p50'] - base:+.0f}"]
                     for name, s in stats.items()])
        added = stats["Execute through the lattice"]["p50"] - base
        inside = float(results["execute_inside_b_us_p50"])  # type: ignore[arg-type]
        floor = stats["bare NATS request/reply, no bridge (floor)"]["p50"]
        glue = stats["Execute through the lattice"]["p50"] - floor - inside
        print(f"where the lattice's Execute goes (p50): the NATS hop {floor:.0f} µs (bare request/reply) + the daemon's "
              f"Execute timed inside b {inside:.0f} µs + the rest {glue:.0f} µs (Python on both ends: the caller's "
              f"hand-off to its loop {stats[HAND_OFF]['p50']:.0f} µs, "
              f"the bridge's task, headers and its grpc.aio call)")
        results["lattice_split_us_p50"] = {"nats_hop": floor, "daemon_execute_inside_b": inside, "python_glue": glue}
        for name, spent in cpu_per_call.items():
            print(f"CPU per call, {name} (µs, by process; ticks of 10 ms over {2 * args.reps} calls): "
                  + ", ".join(f"{role} {us:.0f}" for role, us in spent.items()) + f"; all {sum(spent.values()):.0f}")
        load = os.getloadavg()[0]
        results.update(stats_us=stats, added_us_p50=added, load_average_1m=load)

        # 2. a waiting workload on instances started beforehand: each replica holds `per` instances (an instance
        # runs one call at a time, so they are the replica's capacity); the same callers use b's alone, then
        # b's and c's. The ideal is instances / sleep; what falls short is in the CPU of the busiest process.
        concurrency, per, calls, sleep_s = 8, 4, 64, 0.2
        on_b, on_c = start_instances(lattice, caller, "b", per), start_instances(lattice, caller, "c", per)
        throughput(lattice, caller, on_b + on_c, 16, concurrency, sleep_s)
        roles = process_roles(topology, {"b": b.proc.pid, "c": c.proc.pid})
        one, one_cpu = cpu_shares(roles, lambda: throughput(lattice, caller, on_b, calls, concurrency, sleep_s))
        two, two_cpu = cpu_shares(roles, lambda: throughput(lattice, caller, on_b + on_c, calls, concurrency, sleep_s))
        ideal_one, ideal_two = min(per, concurrency) / sleep_s, min(2 * per, concurrency) / sleep_s
        busiest = max(two_cpu, key=lambda role: two_cpu[role])
        results.update(calls_per_s_one_replica=one, calls_per_s_two_replicas=two, replica_speedup=two / one,
                       ideal_calls_per_s={"one": ideal_one, "two": ideal_two},
                       cpu_percent={"one_replica": one_cpu, "two_replicas": two_cpu}, busiest_process=busiest,
                       workload={"sleep_s": sleep_s, "concurrency": concurrency, "calls": calls,
                                 "instances_per_replica": per})
        print_table(f"replica scaling: {concurrency} callers, Executes that sleep {sleep_s}s on {per} instances per "
                    "replica started beforehand", ["figure", "one replica (b)", "two replicas (b, c)"], [
                        ["calls/s", f"{one:.1f}", f"{two:.1f}"],
                        ["ideal calls/s (instances / sleep)", f"{ideal_one:.1f}", f"{ideal_two:.1f}"],
                        ["of the ideal", f"{one / ideal_one:.0%}", f"{two / ideal_two:.0%}"],
                        *[[f"CPU % of one core: {role}", f"{one_cpu.get(role, 0):.0f}", f"{two_cpu.get(role, 0):.0f}"]
                          for role in sorted(set(one_cpu) | set(two_cpu), key=lambda r: -two_cpu.get(r, 0))],
                    ])
        print(f"busiest process with two replicas: {busiest} ({two_cpu[busiest]:.0f}% of one core; "
              f"machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")

        # 3. link propagation to another machine.
        propagation = percentiles(link_propagation(admin, topology, 50))
        results["link_propagation_ms"] = propagation

        # 4. rows per second from the stream into DuckDB.
        rows = rows_per_second(topology, args.rows, tmp)
        rows_rate = rows["rows_per_second"]
        results.update(rows)

        # 5. SIGKILL of a replica under load (last: c stays dead).
        gap = kill_gap(lattice, caller, topology, c, 6.0, 4)
        results["kill"] = gap

        print_table("replicas, failover, links and the registry", ["figure", "value", "target"], [
            ["added by the lattice, p50", f"{added:+.0f} µs", "≤ +300 µs"],
            [f"calls/s, one replica (b), {per} instances, sleep {sleep_s}s ×{concurrency}", f"{one:.1f}",
             f"ideal {ideal_one:.0f}"],
            [f"calls/s, two replicas (b, c), {per} instances each", f"{two:.1f}", f"ideal {ideal_two:.0f}"],
            ["two replicas vs one", f"{two / one:.2f}×", "≥ 1.8×"],
            ["longest gap without an answer, replica SIGKILLed", f"{gap['longest_gap_ms']:.0f} ms", ""],
            ["slowest call across the kill", f"{gap['slowest_call_ms']:.0f} ms", ""],
            ["failed calls across the kill", f"{gap['failed']:.0f} of {gap['calls']:.0f}", "0"],
            ["link propagation p50 (p99)", f"{propagation['p50']:.1f} ms ({propagation['p99']:.1f})", "≤ 50 ms"],
            ["rows/s, stream into DuckDB", f"{rows_rate:,.0f}", "≥ 40,000/s"],
            ["  floor: bare pull + ack of the same messages, no DuckDB", f"{rows['bare_pull_ack_per_second']:,.0f}",
             ""],
            ["  floor: bare Registry.ingest of the same rows, no NATS",
             f"{rows['bare_registry_ingest_per_second']:,.0f}", ""],
            ["  floor: both in one process (pull + ack beside the ingest of rows parsed beforehand)",
             f"{rows['bare_both_in_one_process_per_second']:,.0f}", ""],
        ])
        print(f"machine load average (1 min) at the start: {load:.1f} on {os.cpu_count()} CPUs (shared machine)")
        del b
    finally:
        for connection in (lattice, admin):
            if connection is not None:
                connection.close()
        topology.close()
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
