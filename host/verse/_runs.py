"""Pipeline runs and their GF(3) audit.

Every pipeline run is a row of ``pipeline_runs`` with the providers it used and their trits as the
registry gave them at the time. ``audit`` does not trust the stored sum: it recomputes each run's sum from
``runtime_providers`` now and names the runs whose providers do not sum to 0 in GF(3).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from worldrt.errors import InvalidArgument
from worldrt.host.registry import Registry
from worldrt.host.verse._selection import SelectionError, gf3_sum

STATUSES = ("ok", "failed")


class Gf3Error(InvalidArgument):
    """A run cannot be recorded as given (unbalanced without permission, unknown provider, bad field)."""




def registry_trits(registry: Registry) -> dict[str, int]:
    """Each provider's trit as ``runtime_providers`` records it."""
    return {r["provider_id"]: r["trit"] for r in registry.query("SELECT provider_id, trit FROM runtime_providers")}


def _number(name: str, value: float | None, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise Gf3Error(f"{name} must be a number, not {value!r}")
    return float(value)


def _timestamp(value: datetime | float | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)


def record_run(registry: Registry, *, verse_id: str, preset: str, providers: Sequence[str], status: str = "ok",
               baseline_value: float | None = None, winner_value: float | None = None, cost_units: float = 0.0,
               duration_ms: float | None = None, started_at: datetime | float | None = None,
               allow_unbalanced: bool = False, result: Any = None, run_id: str | None = None) -> str:
    """Record one pipeline run and return its run_id.

    ``providers`` has one entry per pipeline role, in pipeline order (a provider filling two roles appears
    twice). Trits come from the registry; WEV is ``winner_value - baseline_value`` when both are given.
    ``started_at`` is a datetime (naive means UTC) or a Unix time; it defaults to now.
    Refused: an unknown provider, and a run whose trits do not sum to 0 in GF(3) unless ``allow_unbalanced``.
    """
    if status not in STATUSES:
        raise Gf3Error(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if isinstance(providers, str) or not providers:
        raise Gf3Error("providers must be a non-empty list of provider ids, one per pipeline role")
    trits = registry_trits(registry)
    try:
        total = gf3_sum(providers, trits)
    except SelectionError as exc:
        raise Gf3Error(f"{exc} (runtime_providers has no such row)") from None
    if total != 0 and not allow_unbalanced:
        raise Gf3Error(f"providers {', '.join(providers)} have trits "
                       f"{', '.join(f'{trits[p]:+d}' for p in providers)} summing to {total:+d} in GF(3), not 0; "
                       f"pass allow_unbalanced=True to record the run anyway")
    baseline = _number("baseline_value", baseline_value)
    winner = _number("winner_value", winner_value)
    wev = winner - baseline if winner is not None and baseline is not None else None
    run_id = run_id or uuid.uuid4().hex
    registry.insert_run([run_id, str(verse_id), preset, json.dumps(list(providers)),
                         json.dumps([trits[p] for p in providers]), total, total == 0, bool(allow_unbalanced),
                         baseline, winner, wev, _number("cost_units", cost_units, optional=False),
                         _number("duration_ms", duration_ms), _timestamp(started_at), status,
                         None if result is None else json.dumps(result, default=str)])
    return run_id


def _row(raw: dict[str, Any]) -> dict[str, Any]:
    row = dict(raw)
    for name in ("providers", "trits", "result"):
        if row.get(name) is not None:
            row[name] = json.loads(row[name])
    return row


def runs(registry: Registry, *, verse_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded runs, newest first (JSON columns decoded)."""
    where, params = ("WHERE verse_id = ?", [str(verse_id)]) if verse_id is not None else ("", [])
    tail = "" if limit is None else f"LIMIT {int(limit)}"
    return [_row(r) for r in registry.query(f"SELECT * FROM pipeline_runs {where} "
                                            f"ORDER BY started_at DESC, run_id {tail}", params)]


def audit(registry: Registry, *, all_runs: bool = False) -> list[dict[str, Any]]:
    """The runs whose providers do not sum to 0 in GF(3) by the registry's trits now (or every run with
    ``all_runs``), oldest first: run_id, verse_id, preset, started_at, status, providers, trits,
    gf3_sum (recomputed), balanced, stored_gf3_sum, stored_trits, allow_unbalanced, problem."""
    trits = registry_trits(registry)
    out = []
    for raw in registry.query("SELECT run_id, verse_id, preset, started_at, status, providers, trits, gf3_sum, "
                              "allow_unbalanced FROM pipeline_runs ORDER BY started_at, run_id"):
        row = _row(raw)
        providers = row["providers"]
        unknown = [p for p in providers if p not in trits]
        now = [trits.get(p) for p in providers]
        total = None if unknown else gf3_sum(providers, trits)
        problem = None
        if unknown:
            problem = f"provider(s) {', '.join(unknown)} not in runtime_providers"
        elif total != 0:
            problem = (f"trits {' '.join(f'{t:+d}' for t in now)} of {', '.join(providers)} sum to {total:+d} "
                       f"in GF(3), not 0")
            if row["gf3_sum"] != total:
                problem += f" (the run recorded {row['gf3_sum']:+d})"
            if row["allow_unbalanced"]:
                problem += "; run with allow_unbalanced"
        if problem is None and not all_runs:
            continue
        out.append({"run_id": row["run_id"], "verse_id": row["verse_id"], "preset": row["preset"],
                    "started_at": row["started_at"], "status": row["status"], "providers": providers,
                    "trits": now, "gf3_sum": total, "balanced": problem is None,
                    "stored_gf3_sum": row["gf3_sum"], "stored_trits": row["trits"],
                    "allow_unbalanced": row["allow_unbalanced"], "problem": problem})
    return out
