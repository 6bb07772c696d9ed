"""primeintellect: the contract's coordinator, served by the local async GRPO engine."""

from __future__ import annotations

from worldrt.providers import (
    Call,
    PriceTable,
    Provider,
    ProviderOptions,
    canonical_json,
)
from worldrt.providers.primeintellect._engine import (
    DEFAULT_GROUP_SIZE,
    MAX_ASYNC_LEVEL,
    MAX_GROUP_SIZE,
    AsyncGRPO,
    Hyperparameters,
)
from worldrt.v1 import pb


class PrimeIntellectProvider(Provider):
    provider_id = "primeintellect"
    prices = PriceTable(base={"optimize": 0.01}, per_cpu_ms=0.0001, per_wall_ms=0.00001)

    def __init__(self, options: ProviderOptions) -> None:
        super().__init__(options)
        v = options.values
        hyper = Hyperparameters(lr=float(v.get("lr", 0.1)), clip=float(v.get("clip", 0.2)),
                                epochs=int(v.get("epochs", 4)), init_std=float(v.get("init_std", 0.3)))
        self.engine = AsyncGRPO(options.state_dir, workers=int(v.get("workers", 2)),
                                rollout_timeout_ms=int(v.get("rollout_timeout_ms", 10_000)),
                                max_budget=int(v.get("max_budget", 100_000)), hyper=hyper)

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> int:
        await self.engine.close()
        return 0

    def languages(self) -> list[str]:
        return ["python"]

    def capability_items(self) -> dict[str, object]:
        e, h = self.engine, self.engine.hyper
        return {
            "engine": "local async GRPO: group-relative policy optimization in numpy on this machine "
                      "(not PrimeIntellect's network or PRIME-RL)",
            "algorithm": {
                "advantage": "reward - group mean", "surrogate": "PPO clipped importance ratio",
                "clip": h.clip, "epochs_per_step": h.epochs, "optimizer": "Adam", "lr": h.lr,
                "policy": {"discrete": "softmax over the choices",
                           "continuous": "Gaussian in units of (high - low), draws clipped to [low, high]"},
            },
            "space_json": "object: parameter -> list of choices, or {\"low\": a, \"high\": b}",
            "objective": "objective(params: dict, seed: int) -> float, higher is better; python, sandboxed",
            "budget": "objective evaluations (rollouts); steps = budget // group_size",
            "max_budget": e.max_budget, "group_size": {"default": DEFAULT_GROUP_SIZE, "min": 2, "max": MAX_GROUP_SIZE},
            "max_async_level": {"max": MAX_ASYNC_LEVEL,
                                "meaning": "the group of step s is sampled from policy version max(0, s-1-A), "
                                           "evaluated while training continues, and importance-weighted"},
            "curve": "mean reward of the group consumed at each step",
            "step_digests": "len = steps + 1: digest of the start state, then of the state after each step",
            "reproducible": "bitwise: the same request gives the same reply on this machine and numpy version",
            "verifiable_by": "gensyn: Verify(program_code, start_state_json, step_digests, states_json)",
            "rollout_workers": e.workers, "rollout_timeout_ms": int(e.rollout_timeout_s * 1000),
            "isolation": e.pool.isolation,
        }

    async def optimize(self, request: pb.OptimizeRequest, call: Call) -> pb.OptimizeReply:
        space, config = self.engine.plan(request.space_json, request.budget, request.seed, request.group_size,
                                         request.max_async_level)
        run = await self.engine.run(request.objective_code, space, config, request.checkpoint_every)
        call.meter.sandbox_cpu_ms = run.cpu_ms
        return pb.OptimizeReply(
            best_json=canonical_json(run.best_params), best_value=run.best_value, curve=run.curve,
            step_digests=run.step_digests, start_state_json=run.start_state_json, program_code=run.program_code,
            states_json=run.states_json,
        )


PROVIDER = PrimeIntellectProvider
