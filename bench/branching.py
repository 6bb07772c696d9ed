"""Branching benchmark: morph's daemon over gRPC beside a bare fork and a bare grpcio echo, in one run.

    python bench/branching.py [--reps 50] [--json bench/results/branching.json] [--telemetry]

``--telemetry``: the daemon traces (OTLP to a receiver in another process that counts the spans) and
serves metrics, as an operator would run it; compare with a run without it.

Prints a table (p50/p99 in ms) with each issue target and the ratio to Morph Cloud's published
< 250 ms claim for snapshot and branch, then each figure as a ratio to its bare baseline beside the floor
measured in the same run that no implementation with the same isolation can go under:
* Execute: a bare grpcio echo, and the echo plus a bare round trip of one frame to a sandboxed Python
  process (a function worker's call, no gRPC): a trivial Execute is both;
* Snapshot: a bare fork of a process of the instance's RSS, a bare double fork (a snapshot is not the
  instance's child, so it outlives the instance's own turn), and the floor: the same double fork made and
  timed by the instance's own interpreter in its sandbox (its namespaces, seccomp filter and cgroups);
* Branch(N): N bare forks, and N bare forks each entering new user, network, IPC and UTS namespaces and
  put in its own cgroups with a member's limits (pids, memory, in every hierarchy the daemon's members
  join), the cgroups removed after the kill: a branch shares no namespace with its snapshot or its
  siblings, and has its own bound on processes and memory. Branch(3) is timed back to back (each round waits
  for the children being made for the next, so the snapshot's refill bounds it) and with a pause between
  rounds (the ready children are handed out).
Each figure is timed in blocks interleaved with blocks of its baselines, so the machine's drift falls on
both. The CPU of the machine during the back-to-back rounds, and during the bare forks into new namespaces
and cgroups (with their kills), tells whether the rounds wait or compute. Writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from worldrt.providers.sandbox import Cgroups, WorkerPool
from worldrt.providers.testing import ProviderDaemon, wait_serving
from worldrt.v1 import pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _otlp import collector
from _report import percentiles, print_table, timed, write_json

MORPH_CLAIM_MS = 250.0
# Branch(3) back to back waits for the snapshot's children being made for the last one (the refill is the
# bound); with this pause between rounds, as between an RL round's rollouts, the children are ready.
BRANCH_GAP_S = 0.05
SPACED = f"Branch(3), {BRANCH_GAP_S * 1000:.0f} ms apart"
BARE_ISOLATED = "bare fork+new namespaces+cgroups+ready x{}"
IN_SANDBOX = "double fork+ready in the instance, timed there"
# Run by Execute in the instance: the double fork a Snapshot makes of it, timed in the instance (ms each).
DOUBLE_FORK_IN_SANDBOX = """
import os, time
def double_fork():
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            os.write(w, b"x")
        os._exit(0)
    os.waitpid(pid, 0)
    os.read(r, 1)
    took = (time.perf_counter() - t0) * 1000
    os.close(r)
    os.close(w)
    return took
[double_fork() for _ in range({reps})]
"""

ECHO_SERVER = r"""
import asyncio, sys, grpc
async def main(address):
    server = grpc.aio.server()
    async def echo(request, context):
        return request
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    hs = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    server.add_insecure_port(address)
    await server.start()
    await hs.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()
asyncio.run(main(sys.argv[1]))
"""


class BareForks:
    """Bare forks made by a lean helper process of the instance's resident memory: this one is larger, and
    grpc's fork handlers start threads in its children (a process with threads cannot enter a new user
    namespace). Each child's cgroups go where the daemon's members' go, in a directory of this bench."""

    def __init__(self) -> None:
        self._cgroups = Cgroups.open(f"worldrt-bench-{os.getpid()}")  # where the daemon's members go
        dirs = [(str(root / self._cgroups.name), controllers, unified)
                for root, controllers, unified in self._cgroups.hierarchies]
        self._proc = subprocess.Popen([sys.executable, "-S", str(Path(__file__).with_name("_bare_fork.py")),
                                       json.dumps(dirs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, reps: int, rss_mb: int, children: int, *, double: bool = False, isolate: bool = False,
                 cgroups: bool = False) -> list[float]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"reps": reps, "rss_mb": rss_mb, "children": children, "double": double,
                                           "isolate": isolate, "cgroups": cgroups}) + "\n")
        self._proc.stdin.flush()
        answer = json.loads(self._proc.stdout.readline() or '{"error": "the bare fork helper exited"}')
        if "error" in answer:
            raise RuntimeError(answer["error"])
        samples: list[float] = answer["samples"]
        return samples

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._cgroups.close()


def machine_cpu() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU of the machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


@contextmanager
def cpu_use(into: dict[str, float], rounds: int) -> Iterator[None]:
    """The machine's CPU while the blocks run (``rounds`` rounds this one), summed over every block measured
    ``into``: the share of all its cores busy, and the busy CPU ms a round (every process: the daemon, its
    sandboxes, the kernel's work for them, this one)."""
    busy0, all0 = machine_cpu()
    yield
    busy1, all1 = machine_cpu()
    for key, value in (("busy_ticks", busy1 - busy0), ("ticks", all1 - all0), ("rounds", rounds)):
        into[key] = into.get(key, 0) + value
    into["busy_share"] = into["busy_ticks"] / max(1, into["ticks"])
    into["cpu_ms_per_round"] = into["busy_ticks"] * 1000 / os.sysconf("SC_CLK_TCK") / into["rounds"]


def blocked(reps: int, blocks: int = 5) -> list[int]:
    """``reps`` split into ``blocks`` nearly equal blocks."""
    return [reps // blocks + (i < reps % blocks) for i in range(blocks)]


def add(rows: dict[str, list[float]], name: str, samples: list[float]) -> None:
    rows.setdefault(name, []).extend(samples)


def sandbox_round_trip(workdir: Path, reps: int) -> list[float]:
    """A bare round trip of one frame to a sandboxed Python process and back (a function worker's call of a
    function returning 1: no gRPC, no instance bookkeeping), in ms."""
    async def run() -> list[float]:
        pool = WorkerPool(workdir, name="bench-rt", preload=(), ready_workers=0)
        await pool.open()
        try:
            async with pool.lease(1, "def one():\n    return 1\n") as lease:
                for _ in range(50):
                    await lease.call("one", [], 5.0)
                samples = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    await lease.call("one", [], 5.0)
                    samples.append((time.perf_counter() - t0) * 1000)
                return samples
        finally:
            await pool.close()
    return asyncio.run(run())


@contextmanager
def echo_server(workdir: Path) -> Iterator[Callable[[], object]]:
    """A bare grpcio (aio) unary echo in its own process, called with an Execute-sized payload."""
    address = f"unix:{workdir / 'echo.sock'}"
    server = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, address])
    try:
        wait_serving(address, proc=server)
        with grpc.insecure_channel(address) as channel:
            echo = channel.unary_unary("/bench.Echo/Echo")
            payload = pb.ExecuteRequest(instance_id="i-000000000000", code="1").SerializeToString()
            yield lambda: echo(payload)
    finally:
        server.terminate()
        server.wait()


def member_pids(daemon_pid: int, member_id: str) -> set[int]:
    """Pids in the pids cgroup of one member (an instance or a branch) of the daemon with ``daemon_pid``."""
    found: set[int] = set()
    for owner in Path("/sys/fs/cgroup").glob(f"*/worldrt-*-{daemon_pid}"):
        try:
            found.update(int(p) for p in (owner / member_id / "cgroup.procs").read_text().split())
        except OSError:
            continue
    return found


def smaps_private_kib(pid: int) -> tuple[int, int]:
    """(USS, PSS) of a process in KiB from /proc/PID/smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0), fields.get("Pss", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "branching.json"))
    ap.add_argument("--telemetry", action="store_true", help="the daemon traces (OTLP) and serves metrics")
    args = ap.parse_args()
    received: list[int] = []
    with collector(received) if args.telemetry else contextlib.nullcontext():
        report(args)


def report(args: argparse.Namespace) -> None:
    reps = max(args.reps, 50)
    rows: dict[str, list[float]] = {}
    extra: dict[str, object] = {}

    back_to_back: dict[str, float] = {}
    bare_back_to_back: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="worldrt-bench-") as tmp:
        with ProviderDaemon("morph", state_dir=Path(tmp) / "morph", options={"pool_size": "2"},
                            serve_args=("--metrics-listen", "127.0.0.1:0") if args.telemetry else ()) as daemon, \
                contextlib.closing(BareForks()) as bare_fork:
            stub = daemon.stub
            stop = lambda iid: stub.Stop(pb.InstanceRef(instance_id=iid))  # noqa: E731

            def start_warm() -> pb.Instance:
                time.sleep(0.15)  # let the pool of pre-started sandboxes refill, as between real requests
                t0 = time.perf_counter()
                inst = stub.Start(pb.StartRequest())
                start_samples.append((time.perf_counter() - t0) * 1000)
                return inst

            start_samples: list[float] = []
            for _ in range(reps):
                stop(start_warm().instance_id)
            rows["Start (warm pool)"] = start_samples

            iid = stub.Start(pb.StartRequest()).instance_id
            stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import json, random\nstate = list(range(1000))"))
            one = pb.ExecuteRequest(instance_id=iid, code="1")
            with echo_server(Path(tmp)) as echo:
                timed(echo, 20)
                timed(lambda: stub.Execute(one), 20)
                # Interleaved, so the machine's noise falls on the baseline and the call alike.
                for _ in range(8):
                    add(rows, "bare grpcio unary echo", timed(echo, reps // 2))
                    add(rows, "Execute trivial", timed(lambda: stub.Execute(one), reps // 2))
            instance_pid_rss = stub.Execute(pb.ExecuteRequest(
                instance_id=iid, code="int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"))
            rss_mb = max(1, int(instance_pid_rss.value_json) // 1024)
            extra["instance_rss_mib"] = rss_mb

            for block in blocked(reps):
                add(rows, "Snapshot", timed(lambda: stub.Snapshot(pb.SnapshotRequest(instance_id=iid)), block,
                                            after=lambda s: stop(s.snapshot_id)))
                add(rows, "bare fork+ready (same RSS)", bare_fork(block, rss_mb, 1))
                add(rows, "bare double fork+ready (same RSS)", bare_fork(block, rss_mb, 1, double=True))
                add(rows, IN_SANDBOX, json.loads(stub.Execute(pb.ExecuteRequest(
                    instance_id=iid, code=DOUBLE_FORK_IN_SANDBOX.format(reps=block))).value_json))
            snap = stub.Snapshot(pb.SnapshotRequest(instance_id=iid))

            def branch(count: int) -> Callable[[], pb.BranchReply]:
                return lambda: stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=count))

            merge_samples: list[float] = []

            def merge_all(reply: pb.BranchReply) -> None:
                ids = [i.instance_id for i in reply.instances]
                t0 = time.perf_counter()
                winner = stub.Merge(pb.MergeRequest(instance_ids=ids, oracle=pb.OracleResult(
                    rule="max", scores={x: float(k) for k, x in enumerate(ids)})))
                merge_samples.append((time.perf_counter() - t0) * 1000)
                stop(winner.instance_id)

            # Blocks of each, interleaved, so the machine's drift falls on the figure and its baselines alike.
            for block in blocked(reps):
                merge_all(branch(3)())  # not timed: after a pause the first round finds ready children
                with cpu_use(back_to_back, block):
                    add(rows, "Branch(3)", timed(branch(3), block, after=merge_all))
                time.sleep(0.2)  # the snapshot's refill for the next round ends
                add(rows, "bare fork+ready x3", bare_fork(block, rss_mb, 3))
                add(rows, "bare fork+new namespaces+ready x3", bare_fork(block, rss_mb, 3, isolate=True))
                with cpu_use(bare_back_to_back, block):
                    add(rows, BARE_ISOLATED.format(3), bare_fork(block, rss_mb, 3, isolate=True, cgroups=True))
            rows["Merge(3)"] = merge_samples

            def merge_then_pause(reply: pb.BranchReply) -> None:
                merge_all(reply)
                time.sleep(BRANCH_GAP_S)  # as between real rounds: the snapshot's ready children come back

            rows[SPACED] = timed(branch(3), reps, after=merge_then_pause)

            def stop_all(reply: pb.BranchReply) -> None:
                for inst in reply.instances:
                    stop(inst.instance_id)

            for block in blocked(reps):
                add(rows, "Branch(64)", timed(branch(64), block, after=stop_all))
                add(rows, "bare fork+ready x64", bare_fork(block, rss_mb, 64))
                add(rows, "bare fork+new namespaces+ready x64", bare_fork(block, rss_mb, 64, isolate=True))
                add(rows, BARE_ISOLATED.format(64), bare_fork(block, rss_mb, 64, isolate=True, cgroups=True))

            wide = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=256))
            time.sleep(0.5)
            branch_pids = set().union(*(member_pids(daemon.proc.pid, inst.instance_id) for inst in wide.instances))
            uss = pss = 0
            for pid in branch_pids:
                u, p = smaps_private_kib(pid)
                uss += u
                pss += p
            n = max(len(branch_pids), 1)
            extra["branches_measured"] = len(branch_pids)
            extra["uss_per_branch_mib"] = uss / n / 1024
            extra["pss_per_branch_mib"] = pss / n / 1024
            stop_all(wide)
        rows["bare sandbox frame round trip"] = sandbox_round_trip(Path(tmp) / "rt", reps * 8)

    stats = {name: percentiles(samples) for name, samples in rows.items()}
    echo_p50 = stats["bare grpcio unary echo"]["p50"]
    targets = {
        "Snapshot": ("<= 10 ms", stats["Snapshot"]["p50"] <= 10),
        "Branch(3)": ("<= 15 ms", stats["Branch(3)"]["p50"] <= 15),
        "Branch(64)": ("<= 150 ms", stats["Branch(64)"]["p50"] <= 150),
        "Execute trivial": (f"<= 1.5x echo ({1.5 * echo_p50:.2f} ms)",
                            stats["Execute trivial"]["p50"] <= 1.5 * echo_p50),
    }
    table = []
    for name, s in stats.items():
        target, ok = targets.get(name, ("", None))
        claim = f"{s['p50'] / MORPH_CLAIM_MS:.3f}x" if name in ("Snapshot", "Branch(3)", SPACED, "Branch(64)") else ""
        table.append([name, f"{s['p50']:.3f}", f"{s['p99']:.3f}", str(s["n"]), target,
                      "" if ok is None else ("PASS" if ok else "MISS"), claim])
    print_table("morph branching (ms)", ["operation", "p50", "p99", "n", "target (p50)", "", "vs Morph 250 ms"], table)
    p50 = {name: s["p50"] for name, s in stats.items()}
    # figure, its bare baseline, the floor with the same isolation, and the target (ratio to the baseline).
    floors = [
        ("Execute trivial", p50["bare grpcio unary echo"],
         p50["bare grpcio unary echo"] + p50["bare sandbox frame round trip"], 1.25,
         "echo", "echo + a bare sandbox frame round trip"),
        ("Snapshot", p50["bare fork+ready (same RSS)"], p50[IN_SANDBOX], 1.5,
         "bare fork", "a double fork in the instance's sandbox"),
        ("Branch(3)", p50["bare fork+ready x3"], p50[BARE_ISOLATED.format(3)], 1.5,
         "3 bare forks", "3 bare forks into new namespaces and cgroups"),
        (SPACED, p50["bare fork+ready x3"], p50[BARE_ISOLATED.format(3)], 1.5,
         "3 bare forks", "3 bare forks into new namespaces and cgroups"),
        ("Branch(64)", p50["bare fork+ready x64"], p50[BARE_ISOLATED.format(64)], 1.0,
         "64 bare forks", "64 bare forks into new namespaces and cgroups"),
    ]
    ratios = {}
    ratio_rows = []
    for name, bare, floor, target, bare_name, floor_name in floors:
        ratios[name] = {"ratio_to_bare": p50[name] / bare, "floor_ratio_to_bare": floor / bare,
                        "ratio_to_floor": p50[name] / floor, "target_ratio_to_bare": target}
        ratio_rows.append([name, f"{p50[name] / bare:.2f}x {bare_name}", f"<= {target:.2f}x",
                           f"{floor / bare:.2f}x ({floor_name})", f"{p50[name] / floor:.2f}x"])
    print_table("each figure against its bare baseline and its floor (p50, same run)",
                ["figure", "ratio to bare", "target", "floor (same isolation)", "ratio to floor"], ratio_rows)
    extra["cpu_back_to_back"] = {"Branch(3)": back_to_back, BARE_ISOLATED.format(3): bare_back_to_back}
    print(f"Branch(3) back to back (each round: Branch(3), Merge(3), Stop of the winner) kept the machine's cores "
          f"{back_to_back['busy_share']:.0%} busy, {back_to_back['cpu_ms_per_round']:.1f} ms of CPU a round; 3 bare "
          f"forks into new namespaces and cgroups, their kills and the cgroups' removal, back to back: "
          f"{bare_back_to_back['busy_share']:.0%}, {bare_back_to_back['cpu_ms_per_round']:.1f} ms a round")
    mem_ok = extra["uss_per_branch_mib"] <= 3  # type: ignore[operator]
    print(f"idle branch memory over {extra['branches_measured']} branches of one snapshot: "
          f"USS {extra['uss_per_branch_mib']:.2f} MiB, PSS {extra['pss_per_branch_mib']:.2f} MiB per branch "
          f"(target <= 3 MiB private: {'PASS' if mem_ok else 'MISS'}); instance RSS {extra['instance_rss_mib']} MiB")
    write_json(args.json, {"telemetry": args.telemetry, "stats_ms": stats, "memory": extra, "ratios": ratios,
                           "targets": {k: v[1] for k, v in targets.items()},
                           "memory_target_met": mem_ok, "morph_claim_ms": MORPH_CLAIM_MS})


if __name__ == "__main__":
    main()
