"""SPOT_CHECK: re-execute q randomly chosen steps of one claim (probabilistic proof of learning).

If m of the n steps are forged, q uniformly sampled steps catch at least one with probability
1 - (1 - m/n)^q; the request names m/n as forged_fraction. Steps are drawn from the system's secure
random source, so a claimant cannot know in advance which steps are checked.

A sampled step whose state before it is supplied (or is the start state) needs nothing checked before it:
it begins a chain of its own, and chains are re-executed at the same time, on as many workers as the
replayer has. The verdict is the one checking the steps in order gives: the first sampled step that
fails (or raises) decides it, and chains after it are stopped.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
from typing import Any

from worldrt import errors as err
from worldrt.providers.gensyn._dispute import Dispute
from worldrt.providers.gensyn._outcome import Outcome
from worldrt.providers.gensyn._replay import Replayer

_LISTED = 256  # sampled steps named in the proof


def detection_probability(forged_fraction: float, q: int) -> float:
    return 1.0 - (1.0 - forged_fraction) ** q


def choose_steps(steps: int, sample: int, rng: random.Random) -> list[int]:
    return sorted(rng.sample(range(1, steps + 1), min(sample, steps)))


async def spot_check(dispute: Dispute, replayer: Replayer, sample: int, forged_fraction: float,
                     rng: random.Random) -> Outcome:
    if sample < 1:
        raise err.InvalidArgument("sample must be at least 1: it is the number of steps to re-execute")
    if not (0.0 <= forged_fraction <= 1.0) or math.isnan(forged_fraction):
        raise err.InvalidArgument("forged_fraction must be between 0 and 1 (m/n, the share of forged steps)")
    claim = dispute.claims[0]
    chosen = choose_steps(dispute.steps, sample, rng)
    probability = detection_probability(forged_fraction, len(chosen))
    proof: dict[str, Any] = {"mode": "SPOT_CHECK", "claimant": claim.name, "start_digest": dispute.start_digest,
                             "sampled": len(chosen), "sampled_steps": chosen[:_LISTED],
                             "forged_fraction": forged_fraction}

    def caught(step: int, reason: str) -> Outcome:
        proof.update(caught_at=step, reason=reason, reexecuted_steps=replayer.reexecuted)
        return Outcome(False, [], step, replayer.reexecuted, probability, proof)

    if claim.digests[0] != dispute.start_digest:
        return caught(0, "the claim's start digest is not the digest of start_state_json")
    supplied, previous = sorted(claim.states), 0
    for step in chosen:  # fail before any work when a sampled step is too far from every supplied state
        at = bisect.bisect_right(supplied, step - 1)
        replayer.ensure_within(step - 1, max(previous, supplied[at - 1] if at else 0), claim.digests)
        previous = step

    async def check(chain: list[int]) -> tuple[int, str] | None:
        """Re-execute ``chain``'s steps in order, each from the one checked before it; where and why the first
        that fails does (None when every one stands)."""
        known: tuple[int, dict[str, Any]] | None = None
        for step in chain:
            reached = await replayer.reach([claim], step - 1, claim.digests, dispute.start_state, known)
            if reached.rejected:
                who, at = reached.rejected[0]
                return at, f"the state {who} supplied for step {at} does not hash to its own digest"
            if reached.state is None:
                assert reached.mismatch is not None
                return reached.mismatch, f"replaying step {reached.mismatch} gave {reached.recomputed}"
            state, got = await replayer.step(reached.state, step)
            if got != claim.digests[step]:
                return step, f"re-executing step {step} gave {got}, the claim says {claim.digests[step]}"
            known = (step, state)
        return None

    chains = _chains(chosen, claim.states)
    replayer.workers = max(1, min(replayer.workers, len(chains)))
    checking = [asyncio.ensure_future(check(chain)) for chain in chains]
    try:
        for task in checking:  # in the order of the steps: the first failure decides, as one by one
            failure = await task
            if failure is not None:
                return caught(*failure)
    finally:
        for task in checking:
            task.cancel()
        await asyncio.gather(*checking, return_exceptions=True)
    proof["reexecuted_steps"] = replayer.reexecuted
    return Outcome(True, [claim.name], -1, replayer.reexecuted, probability, proof)


def _chains(chosen: list[int], supplied: Any) -> list[list[int]]:
    """``chosen`` (sorted) cut before each step whose previous state is the start or supplied."""
    chains: list[list[int]] = []
    for step in chosen:
        if not chains or step - 1 == 0 or step - 1 in supplied:
            chains.append([step])
        else:
            chains[-1].append(step)
    return chains
