"""Re-execution of single steps in a sandbox, from a state whose digest the claims commit to.

The referee never trusts a supplied state: it uses one only when its digest equals the digest the
claims commit to for that step. Starting from the latest such state (or the start state), it
replays forward; if that would take more than ``max_replay`` steps it asks for the state instead.
Steps re-executed at the same time run on different workers of one lease (``workers`` of them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from worldrt import errors as err
from worldrt.providers import digest
from worldrt.providers.gensyn._dispute import ClaimView
from worldrt.providers.sandbox import (
    CallError,
    CallTimeout,
    ProgramError,
    WorkerLease,
    WorkerLost,
    WorkerPool,
)

NEEDS_STATE_TRAILER = "x-worldrt-needs-state"


@dataclass
class Reached:
    """The outcome of replaying up to a step: its state, or the first replayed step that disagreed."""

    state: dict[str, Any] | None
    source: int
    mismatch: int | None = None
    recomputed: str = ""
    rejected: list[tuple[str, int]] = field(default_factory=list)


class Replayer:
    """Counts every step it re-executes; its sandboxed workers (``workers``, set before the first step) are
    started at the first one."""

    def __init__(self, pool: WorkerPool, program: str, timeout_s: float, max_replay: int, workers: int = 1) -> None:
        self.pool = pool
        self.program = program
        self.timeout_s = timeout_s
        self.max_replay = max_replay
        self.workers = workers
        self.reexecuted = 0
        self.cpu_ms = 0.0
        self._stack = contextlib.AsyncExitStack()
        self._lease: WorkerLease | None = None
        self._starting = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._lease is not None:
            self.cpu_ms = self._lease.cpu_ms
        await self._stack.aclose()

    async def step(self, state: dict[str, Any], t: int) -> tuple[dict[str, Any], str]:
        """Re-execute step ``t`` from ``state``: the new state and its digest."""
        lease = await self._started()
        try:
            result = await lease.call("step", [state, t], self.timeout_s)
        except CallError as exc:
            raise err.InvalidArgument(f"program_code's step() raised at step {t}: {exc.error}") from exc
        except CallTimeout as exc:
            raise err.DeadlineExceeded(
                f"step {t} ran past its timeout of {self.timeout_s * 1000:.0f} ms; verification stopped") from exc
        except WorkerLost as exc:
            raise err.Aborted(f"the sandboxed worker died re-executing step {t}: {exc}") from exc
        self.reexecuted += 1
        if not isinstance(result, dict):
            raise err.InvalidArgument(f"step() must return a dict (a JSON object); at step {t} it returned "
                                      f"{type(result).__name__}")
        return result, digest(result)

    async def _started(self) -> WorkerLease:
        async with self._starting:
            if self._lease is None:
                try:
                    self._lease = await self._stack.enter_async_context(self.pool.lease(self.workers, self.program))
                except ProgramError as exc:
                    raise err.InvalidArgument(f"program_code: {exc}") from exc
            return self._lease

    def checkpoint(self, claims: Sequence[ClaimView], upto: int, expected: Sequence[str],
                   start: dict[str, Any]) -> tuple[int, dict[str, Any], list[tuple[str, int]]]:
        """The latest supplied state at a step <= ``upto`` whose digest is ``expected[step]`` (else the start)."""
        rejected: list[tuple[str, int]] = []
        steps = sorted({k for c in claims for k in c.states if 0 < k <= upto}, reverse=True)
        for k in steps:
            for claim in claims:
                state = claim.state(k)
                if state is None:
                    continue
                if digest(state) == expected[k]:
                    return k, state, rejected
                rejected.append((claim.name, k))
        return 0, start, rejected

    def ensure_within(self, target: int, source: int, expected: Sequence[str]) -> None:
        """FAILED_PRECONDITION (naming the state to supply) when replaying source..target is too long."""
        if target - source <= self.max_replay:
            return
        failure = err.FailedPrecondition(
            f"re-executing step {target + 1} needs the state after step {target} (digest {expected[target]}); "
            f"replaying it from step {source} would take {target - source} steps, above this daemon's limit of "
            f"{self.max_replay}: resend with Claim.states_json[{target}] from any claimant")
        failure.trailers = ((NEEDS_STATE_TRAILER, str(target)),)
        raise failure

    async def reach(self, claims: Sequence[ClaimView], target: int, expected: Sequence[str],
                    start: dict[str, Any], known: tuple[int, dict[str, Any]] | None = None) -> Reached:
        """The state after step ``target``, replayed from the nearest trusted state; each replayed
        step's digest is compared with ``expected``."""
        source, state, rejected = self.checkpoint(claims, target, expected, start)
        if known is not None and source < known[0] <= target:
            source, state = known
        self.ensure_within(target, source, expected)
        for j in range(source + 1, target + 1):
            state, got = await self.step(state, j)
            if got != expected[j]:
                return Reached(None, source, mismatch=j, recomputed=got, rejected=rejected)
        return Reached(state, source, rejected=rejected)
