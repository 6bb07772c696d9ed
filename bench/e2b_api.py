"""The official e2b and e2b-code-interpreter SDKs through `worldrt api serve e2b`, beside the same operations
over worldrt's gRPC (``worldrt.Client`` on the same host) and beside E2B's published pause and resume
figures, in one run.

    python bench/e2b_api.py [--reps 12] [--json bench/results/e2b_api.json]

One ``worldrt host serve`` in a temporary folder, and ``worldrt api serve e2b --host`` on it: the SDK rows go
SDK -> HTTP/1.1 (REST, Connect RPC with JSON, NDJSON) -> the API server -> the host -> the morph provider; the
``worldrt.Client`` rows go Client -> the host -> the same provider, so the difference of the p50s is what the
E2B API adds. The bare baselines, in the same run: an HTTP round trip the server answers from memory (envd's
``GET /health``, with the sandbox's token checked) and a local subprocess ``true``. The operations are
measured in interleaved rounds, so the noise of a shared machine falls on each row alike.

A create is measured twice: with the morph provider's warm pool refilled (what a create usually finds: an
interpreter started ahead) and with the pool just drained (the create starts its own: the cold start).

E2B's figures are the ones /work/shared/ANCHORS.md records from E2B's documentation ("E2B: fork(count
1..20) checkpoints the sandbox in place; pause ~4 s per GB, resume ~1 s"): claims for their cloud, not
measurements made here. The pause rows are shown against 4 s per GB of the sandbox's memory (E2B pauses the
whole VM's memory; worldrt's sandbox has a 1 GB limit, so 4000 ms), the resume rows against 1000 ms. A pause
is also measured with 256 MB held by the interpreter, so its cost per resident byte shows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, write_json
from _rounds import Op, timed_rounds

from tests.support import HostProcess
from tests.support.e2b_api import E2bApiServer
from worldrt.client import Client

E2B_PAUSE_MS_PER_GB = 4000.0
E2B_RESUME_MS = 1000.0
SANDBOX_GB = 1.0  # worldrt's default memory limit for a sandbox (host/api/e2b: MEMORY_MB)
ROUNDS = 3
# The morph provider keeps this many default-image interpreters started ahead (its pool_size option, 2 unless
# the host's provider config says otherwise: providers/morph); a create takes one when there is one ("warm
# pool": the bench waits REFILL_S for the pool to refill first) and starts its own otherwise ("pool drained":
# the pool refilled the same way, then POOL_SIZE creates just before take all of it).
POOL_SIZE = 2
REFILL_S = 4.0
HOLD_256MB = "__held = bytearray(256 << 20)\nfor __i in range(0, len(__held), 4096): __held[__i] = 1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "e2b_api.json"))
    args = ap.parse_args()
    reps = max(args.reps, ROUNDS)
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="worldrt-bench-e2b-api-") as tmp:
        (Path(tmp) / "host").mkdir()
        host = HostProcess(Path(tmp) / "host")
        server = E2bApiServer(host.home, host=host.address)
        try:
            with server.environment():
                measure(server, host, reps, rows)
        finally:
            server.stop()
            host.stop()
    report(rows, args.json)


def measure(server: E2bApiServer, host: HostProcess, reps: int, rows: dict[str, list[float]]) -> None:
    from e2b import Sandbox
    from e2b_code_interpreter import Sandbox as Interpreter

    client = Client.connect(host.address, token=host.token, embed=False)
    sbx = Sandbox.create()
    code = Interpreter.create()
    inst = client.start("morph")
    assert sbx.commands.run("echo ok").stdout == "ok\n"
    assert code.run_code("1").text == "1"
    health = {"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token or ""}
    http = httpx.Client()
    made: list[Any] = []

    def drain(create: Callable[[], object]) -> Callable[[], None]:
        def refilled_then_taken() -> None:
            # From a full pool (refilled while the bench waits), so the create measured next finds it empty
            # whatever the previous rep left: a refill in flight during the clean-up could otherwise leave it one.
            settle()
            made.extend(create() for _ in range(POOL_SIZE))
        return refilled_then_taken

    def settle() -> None:
        time.sleep(REFILL_S)

    def end_all(last: object) -> None:
        everything = [*made, *(last if isinstance(last, list) else [last])]
        for one in everything:
            if isinstance(one, Exception):
                raise one  # a fork that failed: the row would time something else
            one.kill() if isinstance(one, Sandbox) else one.stop()
        made.clear()

    def client_branch() -> list[object]:
        snap = inst.snapshot()
        children = snap.branch(3)
        snap.delete()
        return list(children)

    # Pause and resume act on sandboxes of their own, made (and filled) untimed before each rep.
    paused: list[Any] = []

    def sdk_paused(fill: str) -> Callable[[], None]:
        def make() -> None:
            one = Interpreter.create()
            one.run_code(fill or "x = 1")
            paused.append(one)
        return make

    def client_paused(fill: str) -> Callable[[], None]:
        def make() -> None:
            one = client.start("morph")
            one.exec(fill or "x = 1")
            paused.append(one)
        return make

    def sdk_pause() -> object:
        paused[-1].pause()
        return paused.pop()

    def client_pause() -> object:
        one = paused.pop()
        snap = one.snapshot()
        one.stop()
        return snap

    def sdk_pause_first() -> None:
        sdk_paused("")()
        paused[-1].pause()

    def sdk_resume() -> object:
        return Interpreter.connect(paused.pop().sandbox_id)

    def client_pause_first() -> None:
        client_paused("")()
        paused.append(client_pause())

    def client_resume() -> object:
        snap = paused.pop()
        started = snap.start()
        snap.delete()
        return started

    def release(one: object) -> None:
        one.kill() if isinstance(one, Sandbox) else (
            one.delete() if hasattr(one, "delete") else one.stop())  # type: ignore[attr-defined]

    def sdk_sandbox_created() -> Sandbox:
        return Sandbox.create()

    # name -> (call, untimed preparation, untimed clean-up, reps per round weight)
    ops: dict[str, Op] = {
        "bare: HTTP GET /health (token checked)": (lambda: http.get(f"{server.url}/health", headers=health),
                                                   None, None, 4),
        "bare: local subprocess `true`": (lambda: subprocess.run(["true"], check=True), None, None, 4),
        "SDK Sandbox.create(), warm pool": (sdk_sandbox_created, settle, end_all, 1),
        "Client.start('morph'), warm pool": (lambda: client.start("morph"), settle, end_all, 1),
        "SDK Sandbox.create(), pool drained": (sdk_sandbox_created, drain(sdk_sandbox_created), end_all, 1),
        "Client.start('morph'), pool drained": (lambda: client.start("morph"),
                                               drain(lambda: client.start("morph")), end_all, 1),
        "SDK commands.run('true')": (lambda: sbx.commands.run("true"), None, None, 3),
        "Client inst.spawn(['true']).wait()": (lambda: inst.spawn(["true"]).wait(), None, None, 3),
        "SDK run_code('1')": (lambda: code.run_code("1"), None, None, 3),
        "Client inst.exec('1')": (lambda: inst.exec("1"), None, None, 3),
        "SDK sbx.fork(count=3)": (lambda: sbx.fork(count=3), None, end_all, 1),
        "Client snapshot + branch(3)": (client_branch, None, end_all, 1),
        "SDK pause() (idle interpreter)": (sdk_pause, sdk_paused(""), release, 1),
        "Client snapshot + stop (idle interpreter)": (client_pause, client_paused(""), release, 1),
        "SDK pause() (256 MB held)": (sdk_pause, sdk_paused(HOLD_256MB), release, 1),
        "Client snapshot + stop (256 MB held)": (client_pause, client_paused(HOLD_256MB), release, 1),
        "SDK Sandbox.connect(id) of a paused one (resume)": (sdk_resume, sdk_pause_first, release, 1),
        "Client snapshot.start() (resume)": (client_resume, client_pause_first, release, 1),
    }

    try:
        timed_rounds(ops, rows, reps, ROUNDS)
        forks = sbx.fork(count=3)
        assert all(isinstance(f, Sandbox) for f in forks), forks
        end_all(forks)
    finally:
        http.close()
        for one in paused:
            release(one)
        inst.stop()
        sbx.kill()
        code.kill()
        client.close()


PAIRS = {"SDK Sandbox.create(), warm pool": "Client.start('morph'), warm pool",
         "SDK Sandbox.create(), pool drained": "Client.start('morph'), pool drained",
         "SDK commands.run('true')": "Client inst.spawn(['true']).wait()",
         "SDK run_code('1')": "Client inst.exec('1')",
         "SDK sbx.fork(count=3)": "Client snapshot + branch(3)",
         "SDK pause() (idle interpreter)": "Client snapshot + stop (idle interpreter)",
         "SDK pause() (256 MB held)": "Client snapshot + stop (256 MB held)",
         "SDK Sandbox.connect(id) of a paused one (resume)": "Client snapshot.start() (resume)"}
PAUSES = ("SDK pause() (idle interpreter)", "Client snapshot + stop (idle interpreter)",
          "SDK pause() (256 MB held)", "Client snapshot + stop (256 MB held)")
RESUMES = ("SDK Sandbox.connect(id) of a paused one (resume)", "Client snapshot.start() (resume)")


def report(rows: dict[str, list[float]], json_path: str) -> None:
    stats = {name: percentiles(samples) for name, samples in rows.items()}
    pause_claim = E2B_PAUSE_MS_PER_GB * SANDBOX_GB
    table = []
    for name, s in stats.items():
        direct = PAIRS.get(name)
        over = f"{s['p50'] - stats[direct]['p50']:+.1f} ms" if direct and direct in stats else ""
        claim = (f"{s['p50'] / pause_claim:.3f}x of {pause_claim:.0f}" if name in PAUSES else
                 f"{s['p50'] / E2B_RESUME_MS:.3f}x of {E2B_RESUME_MS:.0f}" if name in RESUMES else "")
        table.append([name, f"{s['p50']:.1f}", f"{s['p99']:.1f}", str(s["n"]), over, claim])
    print_table("e2b SDKs on worldrt vs worldrt.Client on the same host (ms; shared 2-core machine)",
                ["operation", "p50", "p99", "n", "SDK over Client (p50)", "vs E2B's published figure (ms)"], table)
    write_json(json_path, {
        "stats_ms": stats, "pairs": PAIRS,
        "e2b_published": {"pause_ms_per_gb": E2B_PAUSE_MS_PER_GB, "resume_ms": E2B_RESUME_MS,
                          "source": "/work/shared/ANCHORS.md, 'Sandboxes: APIs and numbers' (E2B documentation): "
                                    "pause ~4 s per GB, resume ~1 s; a claim for their cloud, not measured here"},
        "sandbox_gb": SANDBOX_GB, "pool_size": POOL_SIZE, "refill_s": REFILL_S,
        "note": "SDK rows: SDK -> HTTP/1.1 -> api serve e2b -> host -> morph provider; Client rows: worldrt.Client "
                "-> host -> morph provider; bare rows in the same run; interleaved rounds on a shared machine"})


if __name__ == "__main__":
    os.environ.pop("E2B_DEBUG", None)
    main()
