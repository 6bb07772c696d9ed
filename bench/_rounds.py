"""Timing an API's operations in interleaved rounds (the compatible-API benches share it): each operation
has an untimed preparation (fill or drain a warm pool, make the sandbox a pause acts on) and an untimed
clean-up of what it made, runs once unrecorded, then ``rounds`` times over all operations in turn, so the
SDK rows and their direct counterparts see the same machine load."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# name -> (call, untimed preparation, untimed clean-up of the call's value, reps per round weight)
Op = tuple[Callable[[], Any], Callable[[], None] | None, Callable[[Any], None] | None, int]


def timed_rounds(ops: dict[str, Op], rows: dict[str, list[float]], reps: int, rounds: int) -> None:
    """Each op warmed once, then ``rounds`` interleaved rounds of ``reps * weight // (2 * rounds)`` (at least
    one) timed calls, their milliseconds appended to ``rows[name]``."""

    def run(name: str, times: int, *, record: bool = True) -> None:
        fn, prepare, after, _ = ops[name]
        for _ in range(times):
            if prepare is not None:
                prepare()
            t0 = time.perf_counter()
            out = fn()
            took = (time.perf_counter() - t0) * 1000
            if record:
                rows.setdefault(name, []).append(took)
            if after is not None:
                after(out)

    for name in ops:  # warm each once
        run(name, 1, record=False)
    for _ in range(rounds):
        for name, (_fn, _prepare, _after, per) in ops.items():
            run(name, max(1, reps * per // (2 * rounds)))
