"""The command a person types: ``worldrt verse pipeline 1069`` timed end to end, cold and against a warm host.

    python bench/pipeline_cli.py [--runs 5] [--python .venv/bin/python ...] [--json bench/results/pipeline_cli.json]

For each interpreter given (default: this one; give two venvs' pythons to compare two trees in one run: they
take turns in every round, each going first in turn), in a temporary working directory of its own:
* one untimed run first builds the explorer component into ``.worldrt/cache`` (about 10 s, once; skipped
  when this checkout's ``.worldrt/cache/examples`` has it, which is copied in);
* **cold CLI**: ``worldrt verse pipeline 1069 --json`` with no host running: the embedded host starts the five
  provider daemons, runs the pipeline and stops them;
* **warm host**: the same command while ``worldrt host serve`` runs in that directory (daemons up, component
  compiled): the CLI process's start-up plus the pipeline on the host;
* the bare baselines, interleaved with the runs so machine noise falls on both: ``python -c pass`` (an
  interpreter's start-up) and ``python -c 'import grpc, duckdb, wasmtime'`` (the libraries any host needs);
* the cold run's floor were nothing to wait for: the CPU the command and every process it started (the
  daemons, their sandboxes) spent, spread over every core. It is the machine's busy CPU during the run
  (/proc/stat), less what the machine spends idle (measured before the runs): the command's own rusage misses
  every process reaped automatically (a sandbox's workers and branches, whose parents ignore SIGCHLD), about
  2 of its 5 s. The cold run's wall time above it is waiting: each daemon's start-up in turn (its interpreter,
  its sandboxes' warm pool, which it fills before it says SERVING), then the pipeline's calls one after
  another.
Every run must give the same WEV (``--wev``, +359.07 for verse 1069). Targets (issue 24): warm <= 800 ms,
cold <= 2000 ms, p50 of the wall time of the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, write_json

ROOT = Path(__file__).resolve().parent.parent
TARGETS_MS = {"cold CLI": 2000.0, "warm host": 800.0}
BARE = {"python -c pass": "pass", "python -c 'import grpc, duckdb, wasmtime'": "import grpc, duckdb, wasmtime"}


CPU_FLOOR = "cold CLI: busy CPU of the machine ÷ cores"
IDLE_SAMPLE_S = 3.0


def busy_cpu_s() -> float:
    """CPU time the whole machine has spent busy (user, nice, system, irq, softirq; not steal), in seconds."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def idle_busy_rate() -> float:
    """The machine's busy CPU per second of wall time while this bench waits (its background)."""
    cpu0, t0 = busy_cpu_s(), time.perf_counter()
    time.sleep(IDLE_SAMPLE_S)
    return (busy_cpu_s() - cpu0) / (time.perf_counter() - t0)


def wall_ms(argv: list[str], cwd: Path) -> tuple[float, str, float]:
    """The command's wall time (ms), its output, and the machine's busy CPU (ms) while it ran."""
    cpu0, t0 = busy_cpu_s(), time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    ms = (time.perf_counter() - t0) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return ms, done.stdout, (busy_cpu_s() - cpu0) * 1000


def pipeline(cli: Path, cwd: Path, verse: int) -> tuple[float, float, float]:
    ms, out, cpu_ms = wall_ms([str(cli), "verse", "pipeline", str(verse), "--json"], cwd)
    return ms, round(float(json.loads(out)["wev"]), 2), cpu_ms


PROBE = "import sys; from worldrt.providers import serving; sys.exit(0 if serving('unix:.worldrt/host.sock') else 1)"


def wait_host(python: Path, cwd: Path, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"worldrt host serve exited with {server.returncode}; see {cwd / 'serve.log'}")
        if subprocess.run([str(python), "-c", PROBE], cwd=cwd, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"worldrt host serve did not answer within {timeout_s:.0f} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def measure(pythons: list[Path], runs: int, verse: int,
            background: float) -> tuple[list[dict[str, list[float]]], list[set[float]]]:
    """Every tree's samples; the trees take turns within each round, so load falls on all of them alike.
    ``background``: the machine's busy CPU per second when idle, taken off each cold run's CPU."""
    clis = [python.parent / "worldrt" for python in pythons]
    rows: list[dict[str, list[float]]] = [{} for _ in pythons]
    wevs: list[set[float]] = [set() for _ in pythons]

    def bare(i: int) -> None:
        for name, code in BARE.items():
            rows[i].setdefault(name, []).append(wall_ms([str(pythons[i]), "-c", code], ROOT)[0])

    def turns(r: int) -> list[int]:
        """Round ``r``'s order: each tree goes first in turn (a cold run's exit still costs the next one CPU)."""
        order = list(range(len(pythons)))
        return order[r % len(order):] + order[:r % len(order)]

    def timed(i: int, cwd: Path, kind: str) -> None:
        ms, wev, cpu_ms = pipeline(clis[i], cwd, verse)
        rows[i].setdefault(kind, []).append(ms)
        if kind == "cold CLI":  # the floor were nothing to wait: the command's CPU spread over every core
            rows[i].setdefault(CPU_FLOOR, []).append((cpu_ms - background * ms) / (os.cpu_count() or 1))
        wevs[i].add(wev)
        bare(i)

    with tempfile.TemporaryDirectory(prefix="worldrt-bench-cli-") as tmp:
        dirs = [Path(tmp) / str(i) for i in range(len(pythons))]
        built = ROOT / ".worldrt" / "cache" / "examples"
        for i, cwd in enumerate(dirs):
            if built.is_dir():
                shutil.copytree(built, cwd / ".worldrt" / "cache" / "examples")
            cwd.mkdir(parents=True, exist_ok=True)
            wevs[i].add(pipeline(clis[i], cwd, verse)[1])  # builds or compiles the component once, untimed
        for r in range(runs):
            for i in turns(r):
                timed(i, dirs[i], "cold CLI")
        servers: list[subprocess.Popen[bytes]] = []
        try:
            for i, cwd in enumerate(dirs):
                with open(cwd / "serve.log", "wb") as log:
                    servers.append(subprocess.Popen([str(clis[i]), "host", "serve"], cwd=cwd, stdout=log,
                                                    stderr=log, stdin=subprocess.DEVNULL))
                wait_host(pythons[i], cwd, servers[i])
                wevs[i].add(pipeline(clis[i], cwd, verse)[1])  # the host's first run loads the component
            for r in range(runs):
                for i in turns(r):
                    timed(i, dirs[i], "warm host")
        finally:
            for server in servers:
                stop(server)
    return rows, wevs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each kind (at least 3)")
    ap.add_argument("--verse", type=int, default=1069)
    ap.add_argument("--wev", type=float, default=359.07, help="the WEV every run must give")
    ap.add_argument("--python", action="append", default=[],
                    help="a venv's python whose worldrt to time (repeat to compare trees; default: this one)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "pipeline_cli.json"))
    args = ap.parse_args()
    runs = max(args.runs, 3)
    pythons = [Path(p) for p in args.python] or [Path(sys.executable)]
    results: dict[str, dict[str, object]] = {}
    table: list[list[str]] = []
    ok = True
    background = idle_busy_rate()
    all_rows, all_wevs = measure([Path(os.path.abspath(p)) for p in pythons], runs, args.verse, background)
    for python, rows, wevs in zip(pythons, all_rows, all_wevs, strict=True):
        label = Path(os.path.abspath(python)).parent.parent.parent.name if len(pythons) > 1 else "this tree"
        stats = {name: percentiles(samples) for name, samples in rows.items()}
        same = wevs == {round(args.wev, 2)}
        ok = ok and same
        met = {name: stats[name]["p50"] <= target for name, target in TARGETS_MS.items()}
        results[label] = {"stats_ms": stats, "wevs": sorted(wevs), "same_wev": same, "targets_met": met}
        bare_pass = stats["python -c pass"]["p50"]
        for name, s in stats.items():
            target = TARGETS_MS.get(name)
            table.append([label, name, f"{s['p50']:.0f}", f"{s['p99']:.0f}", f"{s['p50'] / bare_pass:.1f}×",
                          "" if target is None else f"≤ {target:.0f}: {'PASS' if met[name] else 'MISS'}"])
    print_table(f"worldrt verse pipeline {args.verse}: wall of the command, {runs} runs each (ms)",
                ["tree", "run", "p50", "p99", "/ python -c pass", "target"], table)
    for label, result in results.items():
        print(f"{label}: WEV {', '.join(f'{w:+.2f}' for w in result['wevs'])} in every run "  # type: ignore[attr-defined]
              f"(expected {args.wev:+.2f}): {'yes' if result['same_wev'] else 'NO'}")
    print(f"the machine idle: {background:.3f} s of busy CPU a second (taken off the cold runs' CPU)")
    write_json(args.json, {"verse_id": args.verse, "runs": runs, "targets_ms": TARGETS_MS,
                           "idle_busy_cpu_per_s": round(background, 4), "trees": results})
    if not ok:
        sys.exit("a run gave another WEV")


if __name__ == "__main__":
    main()
