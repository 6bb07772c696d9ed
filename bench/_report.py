"""Shared output of the benchmarks: percentiles, a rich table, a JSON file."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table


def timed(fn: Callable[[], object], reps: int, after: Callable[[object], None] | None = None,
          unit: float = 1000.0) -> list[float]:
    """``reps`` timings of ``fn()`` (ms by default; ``unit=1e6`` for µs); ``after(result)`` runs untimed."""
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - t0) * unit)
        if after is not None:
            after(out)
    return samples


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, max(0, round(q * (n - 1))))] if n else float("nan")

    return {"p50": at(0.5), "p99": at(0.99), "min": ordered[0] if n else float("nan"), "n": n}


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def write_json(path: str | Path, payload: dict[str, object]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                           "kernel": platform.release()}, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               **payload}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    print(f"wrote {path}")
