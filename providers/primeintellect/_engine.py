"""The async GRPO driver: rollouts evaluated by sandboxed workers while the policy trains.

Groups are submitted to the workers as soon as the policy version they are sampled from exists, so
up to ``max_async_level + 1`` groups are evaluated concurrently with training. Which version samples
which group is fixed by the schedule in ``_grpo`` (never by timing), so the run is reproducible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from worldrt import errors as err
from worldrt.providers import canonical_json, digest, parse_json
from worldrt.providers.primeintellect import _grpo
from worldrt.providers.primeintellect._program import grpo_source, program_for
from worldrt.providers.sandbox import (
    CallError,
    CallTimeout,
    ProgramError,
    WorkerLease,
    WorkerLost,
    WorkerPool,
)

T = TypeVar("T")

MAX_GROUP_SIZE = 256
MAX_ASYNC_LEVEL = 16
DEFAULT_GROUP_SIZE = 8
MAX_STATES_BYTES = 48 << 20  # the reply must fit gRPC's 64 MiB message limit


@dataclass(frozen=True)
class Hyperparameters:
    lr: float = 0.1
    clip: float = 0.2
    epochs: int = 4
    init_std: float = 0.3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class Run:
    """The outcome of one Optimize."""

    best_params: Any
    best_value: float
    curve: list[float] = field(default_factory=list)
    step_digests: list[str] = field(default_factory=list)
    start_state_json: str = ""
    program_code: str = ""
    states_json: dict[int, str] = field(default_factory=dict)
    cpu_ms: float = 0.0


async def _all(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Await every awaitable; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class AsyncGRPO:
    def __init__(self, state_dir: Path, *, workers: int = 2, rollout_timeout_ms: int = 10_000,
                 max_budget: int = 100_000, hyper: Hyperparameters | None = None) -> None:
        self.pool = WorkerPool(state_dir, name="rollouts", preludes=(grpo_source(),))
        self.workers = workers
        self.rollout_timeout_s = rollout_timeout_ms / 1000
        self.max_budget = max_budget
        self.hyper = hyper or Hyperparameters()

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    def plan(self, space_json: str, budget: int, seed: int, group_size: int,
             max_async_level: int) -> tuple[list[list], dict[str, Any]]:
        """The parsed space and the run's config; InvalidArgument for anything out of range."""
        try:
            space = _grpo.parse_space(parse_json(space_json, "space_json"))
        except ValueError as exc:
            raise err.InvalidArgument(str(exc)) from exc
        group = group_size or DEFAULT_GROUP_SIZE
        if not 2 <= group <= MAX_GROUP_SIZE:
            raise err.InvalidArgument(f"group_size must be between 2 and {MAX_GROUP_SIZE} (0 means {DEFAULT_GROUP_SIZE})")
        if budget < group:
            raise err.InvalidArgument(f"budget {budget} is below group_size {group}: at least one group of rollouts "
                                      f"is needed")
        if budget > self.max_budget:
            raise err.InvalidArgument(f"budget {budget} is above this daemon's maximum of {self.max_budget} rollouts")
        if max_async_level > MAX_ASYNC_LEVEL:
            raise err.InvalidArgument(f"max_async_level must be at most {MAX_ASYNC_LEVEL}")
        h = self.hyper
        config = {"seed": seed, "group_size": group, "max_async_level": max_async_level, "steps": budget // group,
                  "lr": h.lr, "clip": h.clip, "epochs": h.epochs, "init_std": h.init_std, "beta1": h.beta1,
                  "beta2": h.beta2, "eps": h.eps}
        return space, config

    async def run(self, objective_code: str, space: list[list], config: dict[str, Any],
                  checkpoint_every: int) -> Run:
        if not objective_code.strip():
            raise err.InvalidArgument("objective_code is empty: define objective(params, seed) -> float")
        state = await asyncio.to_thread(_grpo.init_state, space, config)
        out = Run(best_params=None, best_value=float("-inf"), start_state_json=canonical_json(state),
                  program_code=program_for(objective_code))
        out.step_digests.append(digest(state))
        lease = self.pool.lease(min(self.workers, config["group_size"]), out.program_code)
        try:
            async with lease:
                await self._call(lease, "check", [], 0)
                await self._train(lease, state, out, checkpoint_every)
        except ProgramError as exc:
            raise err.InvalidArgument(f"objective_code: {exc}") from exc
        finally:
            out.cpu_ms = lease.cpu_ms
        return out

    async def _train(self, lease: WorkerLease, state: dict[str, Any], out: Run, checkpoint_every: int) -> None:
        space, steps, ahead = state["space"], state["config"]["steps"], state["config"]["max_async_level"]
        pending: dict[int, asyncio.Future[list[float]]] = {}
        kept = 0

        def submit(group: dict[str, Any]) -> None:
            calls = [self._call(lease, "rollout", [_grpo.params_of(space, a), group["task_seed"]], group["step"])
                     for a in group["actions"]]
            pending[group["step"]] = asyncio.ensure_future(_all(calls))

        try:
            for group in state["queue"]:
                submit(group)
            for s in range(1, steps + 1):
                rewards = await pending.pop(s)
                try:
                    state = await asyncio.to_thread(_grpo.advance, state, rewards)
                except ValueError as exc:
                    raise err.InvalidArgument(f"step {s}: {exc}") from exc
                out.step_digests.append(digest(state))
                out.curve.append(state["last"]["mean_reward"])
                if checkpoint_every and s % checkpoint_every == 0:
                    text = out.states_json[s] = canonical_json(state)
                    kept += len(text)
                    if kept > MAX_STATES_BYTES:
                        raise err.ResourceExhausted(
                            f"the states kept for checkpoint_every={checkpoint_every} pass {MAX_STATES_BYTES >> 20} MiB "
                            f"by step {s}; use a larger checkpoint_every")
                if state["queue"] and state["queue"][-1]["step"] == s + ahead + 1:
                    submit(state["queue"][-1])
        finally:
            for task in pending.values():
                task.cancel()
            await asyncio.gather(*pending.values(), return_exceptions=True)
        best = state["best"]
        out.best_params, out.best_value = best["params"], best["value"]

    async def _call(self, lease: WorkerLease, function: str, args: list[Any], step: int) -> Any:
        where = f"on a rollout of step {step} with params {canonical_json(args[0])[:200]}" if args else "when its code was loaded"
        try:
            return await lease.call(function, args, self.rollout_timeout_s)
        except CallError as exc:
            raise err.InvalidArgument(f"the objective raised {where}: {exc.error}") from exc
        except CallTimeout as exc:
            raise err.DeadlineExceeded(
                f"the objective ran past the rollout timeout of {self.rollout_timeout_s * 1000:.0f} ms {where}; "
                f"the optimization was stopped") from exc
        except WorkerLost as exc:
            raise err.Aborted(f"a rollout worker died {where}: {exc}") from exc
