"""Pipeline-run rows and the GF(3) audit, against a real DuckDB registry file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from worldrt.host.registry import Registry
from worldrt.host.verse import Gf3Error, audit, record_run, registry_trits, runs

pytestmark = pytest.mark.pure

FULL = ["morph", "modal", "primeintellect", "gensyn", "ritual"]
T0 = datetime(2026, 5, 1, 12, 0, 0)


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.open(tmp_path / "w.duckdb")
    yield reg
    reg.close()


def test_a_run_is_recorded_with_its_trits_and_wev(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path / "w.duckdb")
    run_id = record_run(registry, verse_id="1069", preset="full", providers=FULL, baseline_value=10.0,
                        winner_value=14.5, cost_units=0.25, duration_ms=812.0, started_at=T0,
                        result={"winner": "b2", "values": {"b0": 11.0, "b2": 14.5}})
    registry.close()
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    row = con.execute("SELECT run_id, verse_id, preset, providers, trits, gf3_sum, balanced, allow_unbalanced, "
                      "baseline_value, winner_value, wev, cost_units, duration_ms, started_at, status, "
                      "result->>'$.winner' FROM pipeline_runs").fetchall()
    con.close()
    assert row == [(run_id, "1069", "full", '["morph", "modal", "primeintellect", "gensyn", "ritual"]',
                    "[1, 1, 0, -1, -1]", 0, True, False, 10.0, 14.5, 4.5, 0.25, 812.0, T0, "ok", "b2")]


def test_runs_reads_rows_back_decoded(registry: Registry) -> None:
    first = record_run(registry, verse_id=7, preset="branch", providers=["morph", "gensyn"], started_at=T0)
    second = record_run(registry, verse_id="8", preset="branch", providers=["morph", "gensyn"], status="failed",
                        started_at=T0.replace(tzinfo=UTC).timestamp() + 60)  # Unix time
    newest = runs(registry)
    assert [r["run_id"] for r in newest] == [second, first]
    assert newest[0]["started_at"] == T0 + timedelta(seconds=60)
    assert newest[1]["providers"] == ["morph", "gensyn"] and newest[1]["trits"] == [1, -1]
    assert newest[1]["wev"] is None and newest[1]["result"] is None and newest[1]["verse_id"] == "7"
    assert [r["run_id"] for r in runs(registry, verse_id="8")] == [second]
    assert len(runs(registry, limit=1)) == 1


def test_an_unbalanced_run_needs_permission(registry: Registry) -> None:
    with pytest.raises(Gf3Error, match=r"providers morph, modal, primeintellect have trits \+1, \+1, \+0 summing to "
                                       r"-1 in GF\(3\), not 0; pass allow_unbalanced=True"):
        record_run(registry, verse_id="1", preset="custom", providers=["morph", "modal", "primeintellect"])
    assert runs(registry) == []
    run_id = record_run(registry, verse_id="1", preset="custom", providers=["morph", "modal", "primeintellect"],
                        allow_unbalanced=True)
    (row,) = runs(registry)
    assert (row["run_id"], row["gf3_sum"], row["balanced"], row["allow_unbalanced"]) == (run_id, -1, False, True)


@pytest.mark.parametrize(("fields", "message"), [
    ({"providers": ["morph", "nobody"]}, "unknown provider 'nobody'"),
    ({"providers": []}, "providers must be a non-empty list"),
    ({"providers": "morph"}, "providers must be a non-empty list"),
    ({"status": "done"}, "status must be one of ok, failed"),
    ({"winner_value": "high"}, "winner_value must be a number"),
    ({"cost_units": None}, "cost_units must be a number"),
    ({"baseline_value": float("nan")}, "baseline_value must be a number"),
])
def test_record_run_refuses(registry: Registry, fields: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"verse_id": "1", "preset": "branch", "providers": ["morph", "gensyn"]} | fields
    with pytest.raises(Gf3Error, match=message):
        record_run(registry, **args)  # type: ignore[arg-type]


def test_audit_lists_only_the_unbalanced_runs(registry: Registry) -> None:
    record_run(registry, verse_id="1", preset="full", providers=FULL, started_at=T0)
    record_run(registry, verse_id="2", preset="inference", providers=["modal", "primeintellect", "ritual"],
               started_at=T0 + timedelta(seconds=1))
    bad = record_run(registry, verse_id="3", preset="custom", providers=["morph", "modal"], allow_unbalanced=True,
                     started_at=T0 + timedelta(seconds=2))
    # a substitute filling two roles keeps the balance
    record_run(registry, verse_id="4", preset="full",
               providers=["morph", "morph", "primeintellect", "gensyn", "ritual"], started_at=T0 + timedelta(seconds=3))
    found = audit(registry)
    assert [r["run_id"] for r in found] == [bad]
    assert found[0]["gf3_sum"] == -1 and found[0]["trits"] == [1, 1] and not found[0]["balanced"]
    assert found[0]["problem"] == "trits +1 +1 of morph, modal sum to -1 in GF(3), not 0; run with allow_unbalanced"
    everything = audit(registry, all_runs=True)
    assert [r["verse_id"] for r in everything] == ["1", "2", "3", "4"]
    assert [r["balanced"] for r in everything] == [True, True, False, True]


def test_audit_recomputes_from_the_registry_trits_not_the_stored_sum(registry: Registry) -> None:
    run_id = record_run(registry, verse_id="1069", preset="branch", providers=["morph", "gensyn"], started_at=T0)
    assert audit(registry) == []
    # The registry now says gensyn is a coordinator: the run no longer balances, whatever its row says.
    registry.execute("UPDATE runtime_providers SET trit = 0 WHERE provider_id = 'gensyn'")
    assert registry_trits(registry)["gensyn"] == 0
    (row,) = audit(registry)
    assert (row["run_id"], row["gf3_sum"], row["trits"], row["stored_gf3_sum"], row["stored_trits"]) == \
        (run_id, 1, [1, 0], 0, [1, -1])
    assert row["problem"] == "trits +1 +0 of morph, gensyn sum to +1 in GF(3), not 0 (the run recorded +0)"


def test_audit_is_not_fooled_by_an_edited_row(registry: Registry) -> None:
    run_id = record_run(registry, verse_id="9", preset="custom", providers=["ritual", "gensyn"],
                        allow_unbalanced=True, started_at=T0)
    registry.execute("UPDATE pipeline_runs SET gf3_sum = 0, balanced = true, trits = '[1, -1]' WHERE run_id = ?",
                     [run_id])
    (row,) = audit(registry)
    assert (row["run_id"], row["gf3_sum"], row["trits"]) == (run_id, 1, [-1, -1])


def test_audit_names_a_provider_the_registry_does_not_know(registry: Registry) -> None:
    run_id = record_run(registry, verse_id="5", preset="branch", providers=["morph", "gensyn"], started_at=T0)
    registry.execute("UPDATE pipeline_runs SET providers = '[\"morph\", \"vanished\"]' WHERE run_id = ?", [run_id])
    (row,) = audit(registry)
    assert row["gf3_sum"] is None and row["trits"] == [1, None]
    assert row["problem"] == "provider(s) vanished not in runtime_providers"


def test_audit_of_an_empty_registry_is_empty(registry: Registry) -> None:
    assert audit(registry) == [] and audit(registry, all_runs=True) == []


def test_runs_survive_reopening(tmp_path: Path) -> None:
    reg = Registry.open(tmp_path / "w.duckdb")
    run_id = record_run(reg, verse_id="1", preset="full", providers=FULL)
    reg.close()
    again = Registry.open(tmp_path / "w.duckdb")
    assert [r["run_id"] for r in runs(again)] == [run_id] and audit(again) == []
    again.close()
