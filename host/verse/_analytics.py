"""Analytics over the registry: WEV over time, provider efficiency, and their plots (PNG, matplotlib Agg).

Every function returns plain rows (a list of dicts) computed in DuckDB; the plots take those rows.
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from worldrt.errors import FailedPrecondition
from worldrt.host.registry import Registry

GROUPS = {"verse": "verse_id", "preset": "preset"}


class AnalyticsError(FailedPrecondition):
    """Nothing to report or plot, or a request the analytics cannot answer."""


def wev_over_time(registry: Registry, per: Sequence[str] = ("verse", "preset")) -> list[dict[str, Any]]:
    """One row per successful pipeline run with a WEV, oldest first: group (the ``per`` values joined by
    " / ", or "all"), verse_id, preset, run_id, started_at, baseline_value, winner_value, wev, cost_units,
    run_number and cumulative_wev (within the group)."""
    unknown = [per] if isinstance(per, str) else [p for p in per if p not in GROUPS]
    if unknown:
        raise AnalyticsError(f"cannot group by {', '.join(map(repr, unknown))}; give a list of any of "
                             f"{', '.join(GROUPS)}")
    columns = [GROUPS[p] for p in per]
    partition = f"PARTITION BY {', '.join(columns)}" if columns else ""
    group = " || ' / ' || ".join(columns) if columns else "'all'"
    return registry.query(f"""
        SELECT {group} AS "group", verse_id, preset, run_id, started_at, baseline_value, winner_value, wev,
               cost_units,
               row_number() OVER w AS run_number,
               sum(wev) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cumulative_wev
        FROM pipeline_runs
        WHERE status = 'ok' AND wev IS NOT NULL
        WINDOW w AS ({partition} ORDER BY started_at, run_id)
        ORDER BY started_at, run_id""")


def efficiency(registry: Registry) -> list[dict[str, Any]]:
    """Cost and latency per provider and operation from ``provider_invocations``: provider_id, trit,
    operation, calls, cost_total, cost_per_call, latency_p50_ms, latency_p99_ms, latency_mean_ms,
    latency_max_ms. Percentiles interpolate linearly between the nearest calls (numpy's default)."""
    return registry.query("""
        SELECT i.provider_id, p.trit, i.operation, count(*) AS calls,
               sum(i.cost_units)::DOUBLE AS cost_total, avg(i.cost_units)::DOUBLE AS cost_per_call,
               quantile_cont(i.latency_ms::DOUBLE, 0.5) AS latency_p50_ms,
               quantile_cont(i.latency_ms::DOUBLE, 0.99) AS latency_p99_ms,
               avg(i.latency_ms)::DOUBLE AS latency_mean_ms, max(i.latency_ms)::DOUBLE AS latency_max_ms
        FROM provider_invocations i LEFT JOIN runtime_providers p USING (provider_id)
        GROUP BY i.provider_id, p.trit, i.operation
        ORDER BY p.trit DESC, i.provider_id, i.operation""")


def wev_per_cost(registry: Registry) -> list[dict[str, Any]]:
    """WEV per cost unit per preset, over successful runs with a WEV: preset, runs, wev_total, wev_mean,
    cost_total, wev_per_cost_unit (None when the runs cost nothing), duration_p50_ms."""
    return registry.query("""
        SELECT preset, count(*) AS runs, sum(wev) AS wev_total, avg(wev) AS wev_mean,
               sum(cost_units) AS cost_total,
               CASE WHEN sum(cost_units) > 0 THEN sum(wev) / sum(cost_units) END AS wev_per_cost_unit,
               quantile_cont(duration_ms, 0.5) AS duration_p50_ms
        FROM pipeline_runs
        WHERE status = 'ok' AND wev IS NOT NULL
        GROUP BY preset ORDER BY preset""")


# plots -----------------------------------------------------------------------------------------------

def _figure(width: float, height: float) -> Any:
    # The Figure API with an explicit Agg canvas: no pyplot global state, no backend switching.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _when(value: Any) -> datetime:
    """A run's time as a datetime: rows that crossed gRPC as JSON carry it as text."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def wev_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """The figure ``plot_wev`` draws: WEV per run and cumulative WEV over time, one line per group."""
    if not rows:
        raise AnalyticsError("no pipeline runs with a WEV to plot; run `worldrt verse pipeline ID` first")
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig = _figure(11, 4.5)
    per_run, cumulative = fig.subplots(1, 2, sharex=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    for name, series in groups.items():
        times = [_when(r["started_at"]) for r in series]
        per_run.plot(times, [r["wev"] for r in series], marker="o", label=name)
        cumulative.plot(times, [r["cumulative_wev"] for r in series], marker="o", label=name)
    per_run.axhline(0, color="grey", linewidth=0.8)
    per_run.set(title="WEV per run (winner − baseline)", ylabel="WEV")
    cumulative.set(title="cumulative WEV", ylabel="WEV")
    for ax in (per_run, cumulative):
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.grid(alpha=0.3)
    per_run.legend(fontsize="small", title="verse / preset" if " / " in rows[0]["group"] else None)
    return fig


def plot_wev(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """WEV per run and cumulative WEV over time, one line per group, written as a PNG to ``path``."""
    return _save(wev_figure(rows), path)


def plot_efficiency(rows: Sequence[dict[str, Any]], path: str | Path,
                    wev_rows: Sequence[dict[str, Any]] | None = None) -> Path:
    """Latency p50/p99 and cost per call for each provider operation (and WEV per cost unit per preset
    when ``wev_rows`` from ``wev_per_cost`` are given), written as a PNG to ``path``."""
    if not rows:
        raise AnalyticsError("no provider invocations to plot; run a pipeline or `worldrt analytics benchmark` first")
    import numpy as np

    panels = 3 if wev_rows else 2
    fig = _figure(5 * panels, max(3.5, 1.2 + 0.45 * max(len(rows), len(wev_rows or ()))))
    axes = fig.subplots(1, panels)
    labels = [f"{r['provider_id']}.{r['operation']} ({_count(r['calls'], 'call')})" for r in rows]
    y = np.arange(len(rows))
    latency, cost = axes[0], axes[1]
    p50 = [r["latency_p50_ms"] or 0.0 for r in rows]
    p99 = [r["latency_p99_ms"] or 0.0 for r in rows]
    latency.barh(y - 0.2, p50, height=0.4, label="p50")
    latency.barh(y + 0.2, p99, height=0.4, label="p99")
    # Operations differ by orders of magnitude (a verify vs an execute); a log axis keeps both readable.
    log = min(p50 + p99) > 0 and max(p99) / min(p50 + p99) > 20
    if log:
        latency.set_xscale("log")
    latency.set(title=f"latency per call (ms{', log' if log else ''})", yticks=y, yticklabels=labels)
    latency.legend(fontsize="small")
    bars = cost.barh(y, [r["cost_per_call"] or 0 for r in rows], color="tab:green")
    cost.bar_label(bars, fmt="%.3g", padding=2, fontsize="small")
    cost.set(title="cost units per call", yticks=y, yticklabels=[])
    for ax in (latency, cost):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    if wev_rows:
        wev = axes[2]
        wy = np.arange(len(wev_rows))
        bars = wev.barh(wy, [r["wev_per_cost_unit"] or 0 for r in wev_rows], color="tab:purple")
        wev.bar_label(bars, fmt="%.3g", padding=2, fontsize="small")
        wev.axvline(0, color="grey", linewidth=0.8)
        wev.set(title="WEV per cost unit", yticks=wy,
                yticklabels=[f"{r['preset']} ({_count(r['runs'], 'run')})" for r in wev_rows])
        wev.invert_yaxis()
        wev.grid(axis="x", alpha=0.3)
    return _save(fig, path)
