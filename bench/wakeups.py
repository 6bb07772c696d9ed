"""Wake-up benchmark: what this machine charges a call for the CPUs it finds idle.

    python bench/wakeups.py [--reps 2000] [--rounds 6] [--json bench/results/wakeups.json]

Every call worldrt makes crosses processes that sleep until their message arrives: the caller, the
provider daemon, the sandboxed instance, and on the lattice the hub and a bridge. On a virtual machine an
idle vCPU is handed back to the hypervisor, and getting it back costs each hop. This bench measures the
same three calls with the CPUs free to idle and with every CPU kept busy by a spinning process of the
lowest priority (SCHED_IDLE: it runs only when nothing else wants the CPU, so it takes no time from the
calls), in alternating rounds so the machine's drift falls on both:

* a pipe round trip between two processes (two wake-ups and nothing else: the floor of a hop);
* a bare grpcio unary echo over a unix socket (the baseline of bench/branching.py and bench/load.py);
* a trivial Execute on a morph daemon's instance, direct gRPC.

The difference is time no code of ours spends; it is part of every baseline and every figure above them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, timed, write_json
from branching import echo_server

from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

ROOT = Path(__file__).resolve().parent.parent
SPIN = ("import os\nos.sched_setaffinity(0, {{{cpu}}})\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
        "while True:\n    pass\n")
PONG = "import os, sys\nr, w = int(sys.argv[1]), int(sys.argv[2])\nwhile os.read(r, 1):\n    os.write(w, b'x')\n"


@contextmanager
def busy_cpus() -> Iterator[None]:
    """One SCHED_IDLE spinner on each CPU this process may use, stopped on exit."""
    spinners = [subprocess.Popen([sys.executable, "-S", "-c", SPIN.format(cpu=cpu)])
                for cpu in sorted(os.sched_getaffinity(0))]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


@contextmanager
def pipe_pong() -> Iterator[Callable[[], None]]:
    """A process that answers each byte on one pipe with a byte on another: one round trip a call."""
    to_child, from_parent = os.pipe()
    from_child, to_parent = os.pipe()
    child = subprocess.Popen([sys.executable, "-S", "-c", PONG, str(to_child), str(to_parent)],
                             pass_fds=(to_child, to_parent))
    os.close(to_child)
    os.close(to_parent)

    def round_trip() -> None:
        os.write(from_parent, b"x")
        os.read(from_child, 1)
    try:
        yield round_trip
    finally:
        os.close(from_parent)  # the child reads EOF and ends
        child.wait()
        os.close(from_child)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=2000, help="calls of each kind per round")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of each state (idle CPUs, busy CPUs)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "wakeups.json"))
    args = ap.parse_args()
    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="worldrt-bench-wakeups-") as tmp, pipe_pong() as pong, \
            echo_server(Path(tmp)) as echo, ProviderDaemon("morph") as morph:
        iid = morph.stub.Start(pb.StartRequest(), metadata=morph.metadata).instance_id
        request = pb.ExecuteRequest(instance_id=iid, code="1")
        calls: dict[str, tuple[Callable[[], object], int]] = {
            "pipe round trip between two processes": (pong, args.reps),
            "bare grpcio unary echo (unix socket)": (echo, args.reps // 2),
            "trivial Execute, direct gRPC": (lambda: morph.stub.Execute(request, metadata=morph.metadata, timeout=30),
                                             args.reps // 10),
        }
        for call, reps in calls.values():
            timed(call, max(10, reps // 10), unit=1e6)
        for _ in range(args.rounds):
            for state in ("idle", "busy"):
                with busy_cpus() if state == "busy" else _nothing():
                    time.sleep(0.2)  # the spinners reach their CPUs
                    for name, (call, reps) in calls.items():
                        samples.setdefault((name, state), []).extend(timed(call, reps, unit=1e6))
        morph.stub.Stop(pb.InstanceRef(instance_id=iid), metadata=morph.metadata)

    stats = {f"{name} [{state}]": percentiles(values) for (name, state), values in samples.items()}
    rows, saved = [], {}
    for name in calls:
        idle, busy = stats[f"{name} [idle]"], stats[f"{name} [busy]"]
        saved[name] = idle["p50"] - busy["p50"]
        rows.append([name, f"{idle['p50']:.1f}", f"{busy['p50']:.1f}", f"{saved[name]:+.1f}",
                     f"{idle['p99']:.1f} / {busy['p99']:.1f}"])
    print_table("a call with the CPUs free to idle, and kept busy at the lowest priority (µs)",
                ["call", "p50, CPUs idle", "p50, CPUs busy", "idle costs", "p99 idle / busy"], rows)
    write_json(args.json, {"stats_us": stats, "idle_costs_us_p50": saved, "cpus": len(os.sched_getaffinity(0))})


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
