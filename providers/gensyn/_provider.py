"""gensyn: the contract's validator by refereed delegation, served by a local Verde-style engine."""

from __future__ import annotations

import random

from worldrt import errors as err
from worldrt.providers import Call, PriceTable, Provider, ProviderOptions
from worldrt.providers.gensyn._dispute import read
from worldrt.providers.gensyn._referee import referee
from worldrt.providers.gensyn._replay import NEEDS_STATE_TRAILER, Replayer
from worldrt.providers.gensyn._spotcheck import spot_check
from worldrt.providers.primeintellect import grpo_source
from worldrt.providers.sandbox import WorkerPool
from worldrt.v1 import pb

MAX_CLAIMS = 64


class GensynProvider(Provider):
    provider_id = "gensyn"
    prices = PriceTable(base={"verify": 0.005}, per_cpu_ms=0.0001, per_wall_ms=0.00001)

    def __init__(self, options: ProviderOptions) -> None:
        super().__init__(options)
        v = options.values
        self.max_steps = int(v.get("max_steps", 1_000_000))
        self.max_replay = int(v.get("max_replay_steps", 128))
        self.step_timeout_s = int(v.get("step_timeout_ms", 10_000)) / 1000
        self.workers = int(v.get("workers", 2))
        if self.workers < 1:
            raise err.InvalidArgument(f"the gensyn option workers must be at least 1, not {self.workers}")
        # The runs it verifies most (primeintellect's) begin with the GRPO core: compiled once, in the template.
        self.pool = WorkerPool(options.state_dir, name="referee", preludes=(grpo_source(),))
        self._rng = random.SystemRandom()

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> int:
        await self.pool.close()
        return 0

    def languages(self) -> list[str]:
        return ["python"]

    def capability_items(self) -> dict[str, object]:
        return {
            "engine": "local Verde-style refereed delegation on this machine (not the Gensyn network)",
            "modes": ["REFEREE", "SPOT_CHECK"],
            "program": "program_code defines step(state: dict, t: int) -> dict; it runs sandboxed, one step per "
                       "re-execution; steps must be deterministic",
            "digests": "sha256 of canonical JSON; a claim has steps + 1 digests (start state, then each step)",
            "referee": "claims must match the start digest; bisection finds the divergent step in ceil(log2 T) "
                       "comparisons; only that step is re-executed, from the state both claims agree on",
            "states": f"claims supply states by step in Claim.states_json, trusted only when they hash to the "
                      f"committed digest; a missing state is replayed from the nearest one if that takes at most "
                      f"{self.max_replay} steps, otherwise FAILED_PRECONDITION with trailer {NEEDS_STATE_TRAILER}",
            "verdict": {"REFEREE": "true when every claim stood; honest names those no re-execution contradicted",
                        "SPOT_CHECK": "true when every sampled step re-executed to the claimed digest"},
            "spot_check": "sample steps drawn by the system's secure random source; detection_probability = "
                          "1 - (1 - forged_fraction)^q for the q steps sampled (a lower bound: steps are "
                          "drawn without repetition)",
            "max_steps": self.max_steps, "max_claims": MAX_CLAIMS, "max_replay_steps": self.max_replay,
            "step_timeout_ms": int(self.step_timeout_s * 1000),
            "spot_check_workers": f"sampled steps whose previous state is supplied are re-executed at the same time "
                                  f"on up to {self.workers} sandboxed workers; the referee re-executes on one",
            "verifies": ["primeintellect Optimize runs (OptimizeReply.program_code, start_state_json, step_digests)"],
            "isolation": self.pool.isolation,
        }

    async def verify(self, request: pb.VerifyRequest, call: Call) -> pb.VerifyReply:
        if request.mode == pb.ATTESTATION:
            raise err.Unimplemented("gensyn does not verify attestations; use ritual")
        if request.mode not in (pb.REFEREE, pb.SPOT_CHECK):
            raise err.InvalidArgument("mode must be REFEREE or SPOT_CHECK")
        referee_mode = request.mode == pb.REFEREE
        dispute = read(request, max_steps=self.max_steps, min_claims=2 if referee_mode else 1,
                       max_claims=MAX_CLAIMS if referee_mode else 1)
        replayer = Replayer(self.pool, dispute.program, self.step_timeout_s, self.max_replay,
                            workers=1 if referee_mode else self.workers)
        try:
            async with replayer:
                if referee_mode:
                    outcome = await referee(dispute, replayer)
                else:
                    outcome = await spot_check(dispute, replayer, request.sample, request.forged_fraction, self._rng)
        finally:
            call.meter.sandbox_cpu_ms = replayer.cpu_ms
        return outcome.reply()
