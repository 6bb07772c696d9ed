"""Per-call metering: wall time, cpu time, and cost from the provider's price table.

Cost units are this project's own accounting units (not any vendor's currency): a provider's price
table gives a base price per operation plus prices per cpu-millisecond and per wall-millisecond.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PriceTable:
    base: dict[str, float] = field(default_factory=dict)
    per_cpu_ms: float = 0.0
    per_wall_ms: float = 0.0

    def cost(self, operation: str, wall_ms: float, cpu_ms: float) -> float:
        return self.base.get(operation, 0.0) + self.per_cpu_ms * cpu_ms + self.per_wall_ms * wall_ms


def process_cpu_ms() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return (me.ru_utime + me.ru_stime) * 1000


@dataclass
class Meter:
    """Measures one call; ``sandbox_cpu_ms`` is set by the operation when its work ran in a sandbox."""

    operation: str
    started: float = field(default_factory=time.perf_counter)
    sandbox_cpu_ms: float | None = None

    def finish(self, prices: PriceTable) -> tuple[float, float, float]:
        """(wall_ms, cpu_ms, cost_units) of the call so far."""
        wall_ms = (time.perf_counter() - self.started) * 1000
        cpu_ms = self.sandbox_cpu_ms or 0.0
        return wall_ms, cpu_ms, prices.cost(self.operation, wall_ms, cpu_ms)
