"""Analytics from a real registry: rows written through Registry.record and record_run, numbers checked,
plots checked to be real PNG files."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from worldrt.host.registry import Invocation, Registry
from worldrt.host.verse import (
    AnalyticsError,
    efficiency,
    plot_efficiency,
    plot_wev,
    record_run,
    wev_figure,
    wev_over_time,
    wev_per_cost,
)

pytestmark = pytest.mark.pure

FULL = ["morph", "modal", "primeintellect", "gensyn", "ritual"]
BRANCH = ["morph", "gensyn"]
T0 = datetime(2026, 5, 1, 12, 0, 0)

CALLS = {  # (provider, operation): [(latency_ms, cost_units), ...]
    ("morph", "execute"): [(1.0, 0.01), (2.0, 0.01), (3.0, 0.02), (4.0, 0.01), (100.0, 0.05)],
    ("morph", "branch"): [(5.0, 0.1), (7.0, 0.1)],
    ("primeintellect", "optimize"): [(250.0, 1.5)],
    ("gensyn", "verify"): [(20.0, 0.005), (30.0, 0.005), (40.0, 0.006)],
}


def ms(x: float) -> float:
    return pytest.approx(x, rel=1e-6)  # type: ignore[return-value]  # latency_ms and cost_units are FLOAT


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry.open(tmp_path_factory.mktemp("analytics") / "w.duckdb")
    now = time.time()
    for (provider, operation), calls in CALLS.items():
        for latency, cost in calls:
            reg.record(Invocation(provider, operation, "1069", {"op": operation}, {"ok": True}, latency, cost, now))
    reg.flush()
    runs = [  # verse, preset, providers, baseline, winner, cost, duration, status
        ("1069", "full", FULL, 10.0, 14.5, 2.0, 900.0, "ok"),
        ("1069", "branch", BRANCH, 10.0, 11.0, 0.5, 300.0, "ok"),
        ("7", "full", FULL, 8.0, 6.0, 1.0, 700.0, "ok"),
        ("1069", "full", FULL, 10.0, 13.0, 1.0, 800.0, "ok"),
        ("1069", "full", FULL, 10.0, None, 0.3, 100.0, "failed"),
        ("9", "branch", BRANCH, None, None, 0.0, 50.0, "ok"),
    ]
    for i, (verse, preset, providers, baseline, winner, cost, duration, status) in enumerate(runs):
        record_run(reg, verse_id=verse, preset=preset, providers=providers, baseline_value=baseline,
                   winner_value=winner, cost_units=cost, duration_ms=duration, status=status,
                   started_at=T0 + timedelta(minutes=i), run_id=f"r{i}")
    yield reg
    reg.close()


def test_wev_over_time_per_verse_and_preset(registry: Registry) -> None:
    rows = wev_over_time(registry)
    assert [(r["run_id"], r["group"], r["wev"], r["run_number"], r["cumulative_wev"]) for r in rows] == [
        ("r0", "1069 / full", 4.5, 1, 4.5),
        ("r1", "1069 / branch", 1.0, 1, 1.0),
        ("r2", "7 / full", -2.0, 1, -2.0),
        ("r3", "1069 / full", 3.0, 2, 7.5),
    ]
    assert rows[0]["started_at"] == T0 and rows[0]["baseline_value"] == 10.0 and rows[0]["winner_value"] == 14.5


@pytest.mark.parametrize(("per", "expected"), [
    (("preset",), [("full", 1, 4.5), ("branch", 1, 1.0), ("full", 2, 2.5), ("full", 3, 5.5)]),
    (("verse",), [("1069", 1, 4.5), ("1069", 2, 5.5), ("7", 1, -2.0), ("1069", 3, 8.5)]),
    ((), [("all", 1, 4.5), ("all", 2, 5.5), ("all", 3, 3.5), ("all", 4, 6.5)]),
])
def test_wev_over_time_other_groupings(registry: Registry, per: tuple[str, ...],
                                       expected: list[tuple[str, int, float]]) -> None:
    assert [(r["group"], r["run_number"], r["cumulative_wev"]) for r in wev_over_time(registry, per)] == expected


@pytest.mark.parametrize("per", [("verse", "color"), "verse"])
def test_wev_over_time_refuses_unknown_groupings(registry: Registry, per: object) -> None:
    with pytest.raises(AnalyticsError, match="cannot group by .*; give a list of any of verse, preset"):
        wev_over_time(registry, per)  # type: ignore[arg-type]


def test_efficiency_per_provider_and_operation(registry: Registry) -> None:
    rows = efficiency(registry)
    assert [(r["provider_id"], r["trit"], r["operation"], r["calls"]) for r in rows] == [
        ("morph", 1, "branch", 2), ("morph", 1, "execute", 5), ("primeintellect", 0, "optimize", 1),
        ("gensyn", -1, "verify", 3)]
    for row in rows:
        calls = CALLS[(row["provider_id"], row["operation"])]
        latencies = np.array([c[0] for c in calls])
        costs = np.array([c[1] for c in calls])
        assert row["latency_p50_ms"] == ms(np.percentile(latencies, 50))
        assert row["latency_p99_ms"] == ms(np.percentile(latencies, 99))
        assert row["latency_mean_ms"] == ms(latencies.mean()) and row["latency_max_ms"] == ms(latencies.max())
        assert row["cost_total"] == ms(costs.sum()) and row["cost_per_call"] == ms(costs.mean())
    execute = rows[1]
    assert execute["latency_p50_ms"] == ms(3.0) and execute["latency_p99_ms"] == ms(96.16)


def test_wev_per_cost_per_preset(registry: Registry) -> None:
    rows = wev_per_cost(registry)
    assert [(r["preset"], r["runs"]) for r in rows] == [("branch", 1), ("full", 3)]
    branch, full = rows
    assert (branch["wev_total"], branch["cost_total"], branch["wev_per_cost_unit"]) == (1.0, 0.5, 2.0)
    assert full["wev_total"] == 5.5 and full["cost_total"] == 4.0 and full["wev_per_cost_unit"] == 5.5 / 4.0
    assert full["wev_mean"] == pytest.approx(5.5 / 3) and full["duration_p50_ms"] == 800.0


def test_empty_registry_gives_no_rows_and_plots_refuse(tmp_path: Path) -> None:
    reg = Registry.open(tmp_path / "w.duckdb")
    try:
        assert wev_over_time(reg) == [] and efficiency(reg) == [] and wev_per_cost(reg) == []
    finally:
        reg.close()
    with pytest.raises(AnalyticsError, match="run `worldrt verse pipeline ID` first"):
        plot_wev([], tmp_path / "wev.png")
    with pytest.raises(AnalyticsError, match="no provider invocations to plot"):
        plot_efficiency([], tmp_path / "eff.png")
    assert not (tmp_path / "wev.png").exists()


def assert_png(path: Path, min_width: int) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_width and height >= 300
    assert len(data) > 15_000  # axes, lines, labels: not a blank canvas


def test_plots_are_png_files(registry: Registry, tmp_path: Path) -> None:
    wev_png = plot_wev(wev_over_time(registry), tmp_path / "plots" / "wev.png")
    assert wev_png == tmp_path / "plots" / "wev.png"
    assert_png(wev_png, 1000)
    eff_png = plot_efficiency(efficiency(registry), tmp_path / "eff.png", wev_per_cost(registry))
    assert_png(eff_png, 1400)
    assert_png(plot_efficiency(efficiency(registry), tmp_path / "eff2.png"), 900)


def test_a_plotted_run_is_dated_the_day_it_ran(tmp_path: Path) -> None:
    from matplotlib.dates import num2date

    reg = Registry.open(tmp_path / "w.duckdb")
    try:
        record_run(reg, verse_id="1069", preset="full", providers=FULL, baseline_value=1.0, winner_value=2.0)
        rows = wev_over_time(reg)
    finally:
        reg.close()
    today = datetime.now(UTC).date()
    # As the CLI gets them from a host: through JSON, the time as text.
    for given in (rows, json.loads(json.dumps(rows, default=str))):
        figure = wev_figure(given)
        for axes in figure.axes:
            (line,) = axes.get_lines()[:1]
            assert [num2date(x).date() for x in line.get_xdata(orig=False)] == [today]
            low, high = axes.get_xlim()
            assert num2date(low).date() <= today <= num2date(high).date()
