"""Processes benchmark (issue 20): long-lived processes in a morph instance beside the same work done with
local pipes on this machine, in one run.

    python bench/processes.py [--reps 50] [--mib 64] [--json bench/results/processes.json]

* start to first output byte: StartProcess(["echo", "x"]) then ReadProcessOutput until its first byte,
  beside subprocess.Popen of the same command reading its stdout pipe;
* stdin to stdout round trip through one long-lived ``cat``: WriteProcessStdin of a line and the next
  chunk of a following ReadProcessOutput, beside a local ``cat`` on two pipes;
* output throughput: ``cat FILE`` (``--mib`` MiB, in the instance's workspace) read to its end over the
  stream, beside ``cat FILE`` into a pipe read by this process (the file on /dev/shm, as the instance's
  disk lives in memory); the target is at least 50% of it;
* 100 long-lived processes in one instance: each start's latency, and the daemon's memory before/after;
* a second tenant's trivial Execute p50/p99 while the first tenant's process floods its output, beside
  the same calls with no flood.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, write_json

FLOOD = "import os\nb = b'x' * 65536\nwhile True:\n    os.write(1, b)\n"
THROUGHPUT_TARGET = 0.5


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _first_byte(stub: Any, iid: str) -> float:
    t0 = time.perf_counter()
    proc = stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=["echo", "x"]))
    for chunk in stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=proc.process_id,
                                                                    stream=pb.PROCESS_STDOUT)):
        if chunk.data:
            break
    return (time.perf_counter() - t0) * 1000


def _local_first_byte() -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(["echo", "x"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.read(1)
    elapsed = (time.perf_counter() - t0) * 1000
    proc.wait()
    proc.stdout.close()
    return elapsed


def _round_trips(stub: Any, iid: str, reps: int) -> list[float]:
    cat = stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=["cat"], stdin=True))
    stream = stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=cat.process_id,
                                                                stream=pb.PROCESS_STDOUT))
    chunks = iter(stream)
    offset, out = 0, []
    for _ in range(reps):
        t0 = time.perf_counter()
        offset = stub.WriteProcessStdin(pb.WriteProcessStdinRequest(instance_id=iid, process_id=cat.process_id,
                                                                    offset=offset, data=b"ping\n")).offset
        next(chunks)
        out.append((time.perf_counter() - t0) * 1000)
    stub.WriteProcessStdin(pb.WriteProcessStdinRequest(instance_id=iid, process_id=cat.process_id, offset=offset,
                                                       eof=True))
    stream.cancel()
    return out


def _local_round_trips(reps: int) -> list[float]:
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc.stdin.write(b"ping\n")
        os.read(proc.stdout.fileno(), 64)
        out.append((time.perf_counter() - t0) * 1000)
    proc.stdin.close()
    proc.wait()
    proc.stdout.close()
    return out


def _throughput(stub: Any, iid: str, size: int) -> float:
    t0 = time.perf_counter()
    proc = stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=["cat", "big.bin"]))
    got = 0
    for chunk in stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=proc.process_id,
                                                                    stream=pb.PROCESS_STDOUT)):
        got += len(chunk.data)
    assert got == size, f"read {got} of {size} bytes"
    return size / 1e6 / (time.perf_counter() - t0)


def _local_throughput(path: str, size: int) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(["cat", path], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    got = 0
    while chunk := proc.stdout.read1(1 << 20):  # type: ignore[attr-defined]
        got += len(chunk)
    proc.wait()
    proc.stdout.close()
    assert got == size
    return size / 1e6 / (time.perf_counter() - t0)


def _executes(stub: Any, iid: str, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        stub.Execute(pb.ExecuteRequest(instance_id=iid, code="1+1"))
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--many", type=int, default=100)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "processes.json"))
    args = ap.parse_args()
    size = args.mib * 1024 * 1024
    rows: list[list[str]] = []
    payload: dict[str, object] = {}
    with ProviderDaemon("morph", options={"pool_size": "2", "process_output_mb": str(2 * args.mib)}) as daemon:
        stub = daemon.stub
        assert daemon.proc is not None
        iid = stub.Start(pb.StartRequest(limits=pb.Limits(processes=4 * args.many, memory_mb=1024,
                                                          disk_mb=2 * args.mib + 64))).instance_id
        # start -> first byte
        _first_byte(stub, iid)  # the first start forks the instance's supervisor
        ours = percentiles([_first_byte(stub, iid) for _ in range(args.reps)])
        local = percentiles([_local_first_byte() for _ in range(args.reps)])
        payload["first_byte_ms"] = {"worldrt": ours, "local_popen": local}
        rows.append(["start to first output byte p50 (ms)", f"{ours['p50']:.2f}", f"{local['p50']:.2f}",
                     f"{ours['p50'] / local['p50']:.1f}x"])
        # stdin -> stdout round trip
        ours = percentiles(_round_trips(stub, iid, args.reps * 4))
        local = percentiles(_local_round_trips(args.reps * 4))
        payload["cat_round_trip_ms"] = {"worldrt": ours, "local_pipe": local}
        rows.append(["stdin->stdout through cat p50 (ms)", f"{ours['p50']:.3f}", f"{local['p50']:.3f}",
                     f"{ours['p50'] / local['p50']:.1f}x"])
        # many long-lived processes in one instance
        first = iid
        iid = stub.Start(pb.StartRequest(limits=pb.Limits(processes=4 * args.many))).instance_id
        stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=["true"]))
        before = _rss_mib(daemon.proc.pid)
        starts = []
        for _ in range(args.many):
            t0 = time.perf_counter()
            stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=["sleep", "600"], stdin=True))
            starts.append((time.perf_counter() - t0) * 1000)
        after = _rss_mib(daemon.proc.pid)
        running = sum(p.state == pb.PROCESS_RUNNING
                      for p in stub.ListProcesses(pb.ListProcessesRequest(instance_id=iid)).processes)
        many = percentiles(starts)
        payload["many"] = {"count": args.many, "running": running, "start_ms": many, "daemon_rss_mib_before": before,
                           "daemon_rss_mib_after": after}
        rows.append([f"{args.many} long-lived processes: start p50 / p99 (ms)", f"{many['p50']:.2f} / {many['p99']:.2f}",
                     "", f"{running} running"])
        rows.append(["  daemon memory before -> after (MiB)", f"{before:.1f} -> {after:.1f}", "",
                     f"+{(after - before) * 1024 / args.many:.0f} KiB each"])
        stub.Stop(pb.InstanceRef(instance_id=iid))
        iid = first
        # throughput
        stub.Execute(pb.ExecuteRequest(instance_id=iid, code=f"open('big.bin', 'wb').write(b'z' * {size})"))
        with tempfile.NamedTemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as f:
            f.write(b"z" * size)
            f.flush()
            ours_mb = [_throughput(stub, iid, size) for _ in range(3)]
            local_mb = [_local_throughput(f.name, size) for _ in range(3)]
        best, base = max(ours_mb), max(local_mb)
        payload["throughput_mb_s"] = {"worldrt": ours_mb, "local_cat_pipe": local_mb, "ratio": best / base,
                                      "target": THROUGHPUT_TARGET, "mib": args.mib}
        rows.append([f"output throughput, cat {args.mib} MiB (MB/s, best of 3)", f"{best:.0f}", f"{base:.0f}",
                     f"{best / base:.0%} (target >= {THROUGHPUT_TARGET:.0%})"])
        stub.Stop(pb.InstanceRef(instance_id=iid))
        # a second tenant during a flood
        tenant_a = stub.Start(pb.StartRequest()).instance_id
        tenant_b = stub.Start(pb.StartRequest()).instance_id
        _executes(stub, tenant_b, 5)
        quiet = percentiles(_executes(stub, tenant_b, args.reps * 4))
        flood = stub.StartProcess(pb.StartProcessRequest(instance_id=tenant_a, argv=["python3", "-c", FLOOD]))
        time.sleep(0.5)
        t0 = time.perf_counter()
        loud = percentiles(_executes(stub, tenant_b, args.reps * 4))
        seconds = time.perf_counter() - t0
        flooded = stub.WaitProcess(pb.WaitProcessRequest(instance_id=tenant_a, process_id=flood.process_id))
        payload["second_tenant_execute_ms"] = {"quiet": quiet, "during_flood": loud,
                                               "flood_bytes": flooded.stdout_size, "flood_seconds": seconds}
        rows.append(["second tenant Execute p50 / p99 (ms), flood vs quiet",
                     f"{loud['p50']:.2f} / {loud['p99']:.2f}", f"{quiet['p50']:.2f} / {quiet['p99']:.2f}",
                     f"flood {flooded.stdout_size / 1e6 / (seconds + 0.5):.0f} MB/s read"])
        for inst in (tenant_a, tenant_b):
            stub.Stop(pb.InstanceRef(instance_id=inst))
    print_table("processes: worldrt (morph, over gRPC) beside local pipes, one run",
                ["measure", "worldrt", "local baseline", "ratio / note"], rows)
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
