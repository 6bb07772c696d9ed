"""Provider benchmark: the coordinator and validators' daemons over gRPC, in one run.

    python bench/providers.py [--reps 5] [--json bench/results/providers.json]

Measures Optimize steps per second (primeintellect), a referee run over T = 1024 steps beside a full
re-execution of the same trajectory (gensyn), and attestation sign + verify (ritual), then prints a
table and writes the figures as JSON, with modal's warm and cold Start -> first Execute result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from worldrt.providers import canonical_json, digest
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, timed, write_json

# --- modal (+1): warm and cold Execute -------------------------------------------------------------
MODAL_CLAIM_MS = 1000.0  # Modal: sub-second cold start


def bench_modal(reps: int) -> dict[str, Any]:
    """Warm Start -> first Execute result (a sandbox from the pre-warmed pool), the same with the pool
    empty (cold: bubblewrap and Python start inside the call), and a one-shot Execute."""
    reps = max(reps, 50)
    one = pb.ExecuteRequest(code="1")
    with ProviderDaemon("modal", options={"pool_size": "2"}) as daemon:
        stub = daemon.stub

        def start_then_execute() -> None:
            iid = stub.Start(pb.StartRequest()).instance_id
            stub.Execute(pb.ExecuteRequest(instance_id=iid, code="1"))

        warm, one_shot = [], []
        for _ in range(reps):
            time.sleep(0.15)  # let the pool refill, as between real requests
            warm += timed(start_then_execute, 1)
            time.sleep(0.15)
            one_shot += timed(lambda: stub.Execute(one), 1)
    with ProviderDaemon("modal", options={"pool_size": "0"}) as daemon:
        stub = daemon.stub

        def cold() -> None:
            iid = stub.Start(pb.StartRequest()).instance_id
            stub.Execute(pb.ExecuteRequest(instance_id=iid, code="1"))
            stub.Stop(pb.InstanceRef(instance_id=iid))

        cold_ms = timed(cold, max(reps // 5, 10))
    return {"warm_start_to_first_result_ms": percentiles(warm), "one_shot_execute_ms": percentiles(one_shot),
            "cold_start_to_first_result_ms": percentiles(cold_ms), "modal_claim_cold_ms": MODAL_CLAIM_MS}


# --- primeintellect (0): Optimize steps per second --------------------------------------------------
OBJECTIVE = """
def objective(params, seed):
    return sum(1.0 for i, t in enumerate([3, 1, 4, 1, 5, 2]) if params[f"p{i}"] == t) - (params["x"] - 0.3) ** 2
"""
SPACE = json.dumps({**{f"p{i}": list(range(8)) for i in range(6)}, "x": {"low": 0.0, "high": 1.0}})


def bench_primeintellect(reps: int) -> dict[str, Any]:
    budget, group = 800, 8
    out: dict[str, Any] = {"budget": budget, "group_size": group, "steps": budget // group}
    with ProviderDaemon("primeintellect") as daemon:
        for level in (0, 2):
            request = pb.OptimizeRequest(objective_code=OBJECTIVE, space_json=SPACE, budget=budget, seed=1,
                                         group_size=group, max_async_level=level)
            daemon.stub.Optimize(request)  # warm
            stats = percentiles(timed(lambda: daemon.stub.Optimize(request), reps))
            out[f"async_{level}"] = {"optimize_ms": stats, "steps_per_s": (budget // group) / stats["p50"] * 1000,
                                     "rollouts_per_s": budget / stats["p50"] * 1000}
    return out


# --- gensyn (-1): referee for T = 1024 beside a full re-execution -----------------------------------
PROGRAM = """
def step(state, t):
    x = (state["x"] * 6364136223846793005 + 1442695040888963407 + t) % (1 << 64)
    return {"x": x, "sum": (state["sum"] + x % 1000) % 1000003}
"""


def bench_gensyn(reps: int) -> dict[str, Any]:
    steps, forge_at = 1024, 700
    namespace: dict[str, Any] = {}
    exec(PROGRAM, namespace)
    honest, forged = [{"x": 7, "sum": 0}], [{"x": 7, "sum": 0}]
    t0 = time.perf_counter()
    for t in range(1, steps + 1):
        honest.append(namespace["step"](honest[-1], t))
    bare_ms = (time.perf_counter() - t0) * 1000
    for t in range(1, steps + 1):
        state = namespace["step"](forged[-1], t)
        forged.append({**state, "x": state["x"] + 1} if t == forge_at else state)
    start = json.dumps(honest[0])
    alice = pb.Claim(claimant="alice", step_digests=[digest(s) for s in honest],
                     states_json={forge_at - 1: canonical_json(honest[forge_at - 1])})
    mallory = pb.Claim(claimant="mallory", step_digests=[digest(s) for s in forged])
    referee = pb.VerifyRequest(program_code=PROGRAM, start_state_json=start, steps=steps, mode=pb.REFEREE,
                               claims=[alice, mallory])
    full = pb.VerifyRequest(program_code=PROGRAM, start_state_json=start, steps=steps, mode=pb.SPOT_CHECK,
                            sample=steps, claims=[pb.Claim(claimant="alice", step_digests=alice.step_digests)])
    with ProviderDaemon("gensyn") as daemon:
        reply = daemon.stub.Verify(referee)
        assert list(reply.honest) == ["alice"] and reply.reexecuted_steps == 1
        referee_ms = percentiles(timed(lambda: daemon.stub.Verify(referee), reps))
        full_reply = daemon.stub.Verify(full)
        assert full_reply.verdict and full_reply.reexecuted_steps == steps
        full_ms = percentiles(timed(lambda: daemon.stub.Verify(full), max(1, reps // 2)))
    return {"steps": steps, "referee_ms": referee_ms, "referee_reexecuted_steps": reply.reexecuted_steps,
            "full_reexecution_ms": full_ms, "full_reexecuted_steps": steps,
            "bare_in_process_replay_ms": bare_ms, "speedup": full_ms["p50"] / referee_ms["p50"]}


# --- ritual (-1): attestation sign + verify ----------------------------------------------------------
def bench_ritual(reps: int) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    body = {"model_hash": "0" * 64, "input": [0.5, -1, 2, 0], "output": {"label": 1}, "seed": 11}

    def sign_and_verify() -> None:
        commitment = digest(body)
        public.verify(key.sign(commitment.encode()), commitment.encode())

    crypto_us = [ms * 1000 for ms in timed(sign_and_verify, 200)]
    execute = pb.ExecuteRequest(language="model", code="mlp-tiny", input_json="[0.5, -1, 2, 0]", seed=11)
    with ProviderDaemon("ritual") as daemon:
        attestation = daemon.stub.Execute(execute).attestation_json
        verify = pb.VerifyRequest(mode=pb.ATTESTATION, attestation_json=attestation)
        assert daemon.stub.Verify(verify).verdict
        execute_ms = percentiles(timed(lambda: daemon.stub.Execute(execute), reps))
        verify_ms = percentiles(timed(lambda: daemon.stub.Verify(verify), reps))
    return {"sign_and_verify_us": percentiles(crypto_us), "attested_execute_ms": execute_ms,
            "eager_verify_ms": verify_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "providers.json"))
    args = parser.parse_args()
    modal = bench_modal(args.reps)
    pi = bench_primeintellect(args.reps)
    gs = bench_gensyn(args.reps)
    rt = bench_ritual(args.reps)

    def ms(stats: dict[str, float]) -> list[str]:
        return [f"{stats['p50']:.2f}", f"{stats['p99']:.2f}"]

    rows = []
    rows.append(["modal warm Start -> first Execute result", *ms(modal["warm_start_to_first_result_ms"]),
                 "target <= 30 ms p50: " + ("PASS" if modal["warm_start_to_first_result_ms"]["p50"] <= 30 else "MISS")])
    rows.append(["modal one-shot Execute (warm pool)", *ms(modal["one_shot_execute_ms"]), "sandbox ends with the run"])
    cold = modal["cold_start_to_first_result_ms"]
    rows.append(["modal cold Start -> first Execute result", *ms(cold),
                 f"{cold['p50'] / MODAL_CLAIM_MS:.2f}x Modal's < 1 s claim"])
    for level in (0, 2):
        r = pi[f"async_{level}"]
        rows.append([f"primeintellect Optimize, {pi['steps']} steps, max_async_level={level}", *ms(r["optimize_ms"]),
                     f"{r['steps_per_s']:.0f} steps/s, {r['rollouts_per_s']:.0f} rollouts/s"])
    rows.append([f"gensyn referee, T={gs['steps']} (re-executes {gs['referee_reexecuted_steps']})",
                 *ms(gs["referee_ms"]), f"{gs['speedup']:.0f}x faster than full"])
    rows.append([f"gensyn full re-execution, {gs['steps']} sandboxed steps", *ms(gs["full_reexecution_ms"]),
                 f"bare in-process loop {gs['bare_in_process_replay_ms']:.2f} ms"])
    rows.append(["ritual ed25519 sign + verify + commitment (us)", *ms(rt["sign_and_verify_us"]), "in-process"])
    rows.append(["ritual attested Execute (mlp-tiny)", *ms(rt["attested_execute_ms"]), "sandboxed, signed"])
    rows.append(["ritual eager Verify (mlp-tiny)", *ms(rt["eager_verify_ms"]), "signature + re-execution"])
    print_table("providers (ms unless noted)", ["what", "p50", "p99", "note"], rows)
    write_json(args.json, {"modal": modal, "primeintellect": pi, "gensyn": gs, "ritual": rt})


if __name__ == "__main__":
    main()
