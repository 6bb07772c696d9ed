"""REFEREE: refereed delegation over two or more claimed trajectories (Verde-style).

Claims whose start digest is not the digest of start_state_json are out at step 0. While the others
disagree anywhere, bisect to a step k where they all agree after k-1 and differ after k, re-execute
step k alone from the agreed state, and keep the claims whose digest matches. ``verdict`` is true
when every claim stood; ``honest`` names the claims no re-execution contradicted.
"""

from __future__ import annotations

from typing import Any

from worldrt.providers.gensyn._bisect import bisect_divergence
from worldrt.providers.gensyn._dispute import ClaimView, Dispute
from worldrt.providers.gensyn._outcome import Outcome
from worldrt.providers.gensyn._replay import Replayer


def _distinct(claims: list[ClaimView]) -> int:
    return len({tuple(c.digests) for c in claims})


async def referee(dispute: Dispute, replayer: Replayer) -> Outcome:
    steps = dispute.steps
    survivors = [c for c in dispute.claims if c.digests[0] == dispute.start_digest]
    wrong_start = [c.name for c in dispute.claims if c.digests[0] != dispute.start_digest]
    proof: dict[str, Any] = {"mode": "REFEREE", "start_digest": dispute.start_digest, "rounds": []}
    if wrong_start:
        proof["wrong_start_digest"] = wrong_start
    first = 0 if wrong_start else -1
    while _distinct(survivors) > 1:
        def agree(i: int, survivors: list[ClaimView] = survivors) -> bool:
            return len({c.digests[i] for c in survivors}) == 1

        if not agree(steps):
            hi, located = steps, "bisection"
        else:
            hi, located = next(i for i in range(1, steps + 1) if not agree(i)), "scan (the final digests agree)"
        k, comparisons = bisect_divergence(agree, 0, hi)
        first = k if first < 0 else min(first, k)
        agreed = survivors[0].digests
        reached = await replayer.reach(dispute.claims, k - 1, agreed, dispute.start_state)
        round_: dict[str, Any] = {"claims": [c.name for c in survivors], "divergent_step": k, "located_by": located,
                                  "comparisons": comparisons, "state_from_step": reached.source}
        if reached.rejected:
            round_["supplied_states_not_matching"] = [f"{n}@{s}" for n, s in reached.rejected]
        if reached.state is None:
            # Every claim agreed on a digest the program does not produce: all of them are wrong there.
            assert reached.mismatch is not None
            round_.update(agreed_digest_wrong_at=reached.mismatch, recomputed_digest=reached.recomputed, kept=[])
            first = min(first, reached.mismatch)
            proof["rounds"].append(round_)
            survivors = []
            break
        _, recomputed = await replayer.step(reached.state, k)
        kept = [c for c in survivors if c.digests[k] == recomputed]
        round_.update(recomputed_digest=recomputed, kept=[c.name for c in kept],
                      eliminated=[c.name for c in survivors if c not in kept])
        proof["rounds"].append(round_)
        survivors = kept
    if not proof["rounds"] and survivors:
        proof["note"] = "the claims agree on every digest: nothing to re-execute (agreement is not re-execution)"
    proof["reexecuted_steps"] = replayer.reexecuted
    return Outcome(verdict=len(survivors) == len(dispute.claims), honest=[c.name for c in survivors],
                   first_divergent_step=first, reexecuted_steps=replayer.reexecuted, proof=proof)
