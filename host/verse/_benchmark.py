"""``worldrt analytics benchmark``: each provider's main operations, timed now on the host's provider
daemons (every call recorded like any other), side by side with the seed's Morph claim of 250 ms."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from worldrt.host.runtime import CallContext
from worldrt.providers import digest
from worldrt.v1 import pb

MORPH_CLAIM_MS = 250.0
_OBJECTIVE = "def objective(params, seed):\n    return -abs(params['x'] - 3)\n"
_STEP = "def step(state, t):\n    return {'n': state['n'] + t}\n"


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_benchmark(host: Any, reps: int = 10) -> list[dict[str, Any]]:
    """p50/p99 of each provider's main operations over ``reps`` calls each (1 to 200)."""
    reps = max(1, min(reps, 200))
    rows: list[dict[str, Any]] = []
    # The calls take the host's router, as every provider call does, and are recorded under this label.
    context = CallContext("benchmark", "benchmark")

    def call(provider: str, operation: str, request: Message) -> Any:
        return host.router.send(provider, operation[0].upper() + operation[1:], request, timeout_s=120,
                                context=context)

    def measure(provider: str, operation: str, fn: Callable[[], object], note: str = "") -> None:
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1000)
        p50 = _quantile(samples, 0.5)
        rows.append({"provider": provider, "operation": operation, "n": reps, "p50_ms": round(p50, 3),
                     "p99_ms": round(_quantile(samples, 0.99), 3), "morph_claim_ms": MORPH_CLAIM_MS,
                     "vs_claim": round(p50 / MORPH_CLAIM_MS, 4), "note": note})

    root = call("morph", "start", pb.StartRequest())
    call("morph", "execute", pb.ExecuteRequest(instance_id=root.instance_id, code="x = 1"))
    snapshots: list[str] = []
    measure("morph", "execute", lambda: call("morph", "execute",
                                            pb.ExecuteRequest(instance_id=root.instance_id, code="x")))
    measure("morph", "snapshot", lambda: snapshots.append(call(
        "morph", "snapshot", pb.SnapshotRequest(instance_id=root.instance_id)).snapshot_id))
    snap = snapshots[-1]

    def branch_and_merge() -> None:
        ids = [i.instance_id for i in call("morph", "branch",
                                           pb.BranchRequest(snapshot_id=snap, count=3)).instances]
        winner = call("morph", "merge", pb.MergeRequest(
            instance_ids=ids, oracle=pb.OracleResult(rule="max", scores={i: float(k) for k, i in enumerate(ids)})))
        call("morph", "stop", pb.InstanceRef(instance_id=winner.instance_id))

    measure("morph", "branch(3) + merge", branch_and_merge)
    for sid in snapshots:
        call("morph", "stop", pb.InstanceRef(instance_id=sid))
    call("morph", "stop", pb.InstanceRef(instance_id=root.instance_id))
    measure("modal", "one-shot execute", lambda: call("modal", "execute", pb.ExecuteRequest(code="1")),
            "fresh warm sandbox per run")
    space = json.dumps({"x": [0, 1, 2, 3, 4, 5]})
    measure("primeintellect", "optimize (32 rollouts)", lambda: call("primeintellect", "optimize",
            pb.OptimizeRequest(objective_code=_OBJECTIVE, space_json=space, budget=32, seed=1, group_size=8)))
    replay = pb.VerifyRequest(program_code=_STEP, start_state_json='{"n": 0}', steps=16, mode=pb.SPOT_CHECK,
                              sample=4, forged_fraction=0.25)
    state, digests = {"n": 0}, []
    digests.append(digest(state))
    for t in range(1, 17):
        state = {"n": state["n"] + t}
        digests.append(digest(state))
    replay.claims.add(claimant="benchmark", step_digests=digests)
    measure("gensyn", "verify (spot check, 4 of 16 steps)", lambda: call("gensyn", "verify", replay))
    attested = call("ritual", "execute", pb.ExecuteRequest(code="mlp-tiny", language="model",
                                                                      input_json="[0.5, -1.0, 2.0, 0.25]"))
    measure("ritual", "attested execute (mlp-tiny)", lambda: call("ritual", "execute", pb.ExecuteRequest(
        code="mlp-tiny", language="model", input_json="[0.5, -1.0, 2.0, 0.25]")))
    measure("ritual", "verify attestation", lambda: call("ritual", "verify", pb.VerifyRequest(
        mode=pb.ATTESTATION, attestation_json=attested.attestation_json, program_code="mlp-tiny")))
    return rows
