"""worldrt verse: the pipeline on all five providers, presets, GF(3), one provider alone, orchestration,
and every recipe of the seed's Justfile — through a running host and through the embedded one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.support import ROOT, HostProcess, built_example, cli

pytestmark = pytest.mark.daemons

PROVIDERS = {"morph", "modal", "primeintellect", "gensyn", "ritual"}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    built_example("explorer")
    running = HostProcess(tmp_path_factory.mktemp("verse"))
    yield running
    assert running.stop() == 0


def _json(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_the_pipeline_runs_every_role_and_the_same_id_gives_the_same_result(host: HostProcess) -> None:
    first = _json(cli(host.home, "verse", "pipeline", "1069", "--json"))
    again = _json(cli(host.home, "verse", "pipeline", "1069", "--json"))
    assert first["providers"] == ["morph", "modal", "primeintellect", "gensyn", "ritual"]
    assert (first["trits"], first["gf3_sum"], first["balanced"]) == ([1, 1, 0, -1, -1], 0, True)
    result = first["result"]
    assert result["snapshot"]["kind"] == "MEMORY_AND_DISK" and len(result["candidates"]) == 3
    for candidate in result["candidates"]:
        assert candidate["optimized"]["steps"] > 0 and candidate["verification"]["verdict"] is True
        assert candidate["verification"]["reexecuted_steps"] >= 1
    values = [c["value"] for c in result["candidates"]]
    assert result["winner"]["value"] == max(values)
    assert first["wev"] == pytest.approx(first["winner_value"] - first["baseline_value"])
    assert first["wev"] > 0, "optimized strategies should beat the default one on verse 1069"
    assert result["attestation"]["verdict"] is True and result["attestation"]["matches_winner"] is True
    for key in ("wev", "winner_value", "baseline_value", "trits"):
        assert again[key] == first[key]
    assert again["result"]["winner"] == result["winner"]
    other = _json(cli(host.home, "verse", "pipeline", "7", "--json"))
    assert other["baseline_value"] != first["baseline_value"], "another verse is another world"


def test_every_provider_call_of_a_run_is_recorded(host: HostProcess) -> None:
    run = _json(cli(host.home, "verse", "pipeline", "4242", "--json"))
    rows = _json(cli(host.home, "invocations", "--verse", "4242", "--limit", "200", "--json"))["invocations"]
    assert {r["provider_id"] for r in rows} == PROVIDERS
    assert len(rows) == run["result"]["provider_calls"]
    assert sum(r["cost_units"] for r in rows) == pytest.approx(run["cost_units"], rel=1e-3)
    runs = _json(cli(host.home, "analytics", "wev", "--json"))["rows"]
    assert any(r["run_id"] == run["run_id"] and r["wev"] == pytest.approx(run["wev"]) for r in runs)


@pytest.mark.parametrize(("preset", "providers"), [
    ("branch", ["morph", "gensyn"]), ("inference", ["modal", "primeintellect", "ritual"])])
def test_the_other_presets(host: HostProcess, preset: str, providers: list[str]) -> None:
    run = _json(cli(host.home, "verse", "pipeline", "1069", "--preset", preset, "--json"))
    assert run["providers"] == providers and run["gf3_sum"] == 0
    result = run["result"]
    if preset == "branch":
        assert result["snapshot"] is not None and "optimized" not in result["candidates"][0]
        assert all(c["verification"]["verdict"] for c in result["candidates"])
    else:
        assert result["snapshot"] is None and result["attestation"]["verdict"] is True
        assert all("optimized" in c for c in result["candidates"])


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_one_provider_alone(host: HostProcess, provider: str) -> None:
    run = _json(cli(host.home, "verse", "run", "1069", "--on", provider, "--json"))
    result = run["result"]
    assert run["provider"] == provider
    if provider == "modal":
        assert result["baseline"]["value"] == pytest.approx(-142.764584)
    else:
        assert result["winner"] is not None
    if provider == "gensyn":
        assert result["candidates"][0]["verification"]["verdict"] is True
    if provider == "ritual":
        assert result["attestation"]["verdict"] is True
    if provider == "morph":
        assert result["snapshot"] is not None and len(result["candidates"]) == 3


@pytest.mark.parametrize("mode", ["optimal", "robust"])
def test_orchestrate_pushes_down_resolves_and_pulls_up(host: HostProcess, mode: str) -> None:
    run = _json(cli(host.home, "verse", "orchestrate", "1069", mode, "--json"))
    values = run["branch_values"]
    ranked = sorted(values, key=values.get)
    assert run["observed"] == (ranked[-1] if mode == "optimal" else ranked[(len(ranked) - 1) // 2])
    assert run["invariant_held"] is True and run["pulled_up"] == pytest.approx(run["stake"])
    assert all(v == pytest.approx(run["stake"]) for v in run["payoff_after_push_down"].values())
    bad = cli(host.home, "verse", "orchestrate", "1069", "greedy")
    assert bad.returncode == 2 and "unknown mode 'greedy'" in bad.stderr


def test_every_justfile_recipe(host: HostProcess) -> None:
    just = shutil.which("just", path=str(Path(os.sys.executable).parent)) or shutil.which("just")
    assert just, "just comes from PyPI (rust-just) in the test extra"
    env = {**os.environ, "WORLDRT_STATE_DIR": str(host.home), "PATH": f"{Path(os.sys.executable).parent}:"
           + os.environ.get("PATH", "")}
    env.pop("WORLDRT_TOKEN", None)
    recipes = [["providers-list"], ["provider-status", "morph"], ["verse-select", "full"],
               ["verse-select", "branch"], ["verse-select", "inference"], ["verse-on-morph", "1069"],
               ["verse-on-modal", "1069"], ["verse-on-primeintellect", "1069"], ["verse-on-gensyn", "1069"],
               ["verse-on-ritual", "1069"], ["verse-pipeline", "1069"], ["verse-orchestrate", "1069", "optimal"],
               ["wev-analytics"], ["provider-efficiency"], ["provider-benchmark", "--reps", "2"], ["gf3-audit"]]
    listed = subprocess.run([just, "-f", str(ROOT / "Justfile"), "--summary"], capture_output=True, text=True,
                            env=env, check=True).stdout.split()
    assert sorted(listed) == sorted({r[0] for r in recipes})
    for recipe in recipes:
        out = subprocess.run([just, "-f", str(ROOT / "Justfile"), "-d", str(host.home), *recipe, "--json"],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, (recipe, out.stderr[-2000:])
        json.loads(out.stdout)


def test_selection_replaces_an_unhealthy_provider_or_refuses(tmp_path: Path) -> None:
    # A directory where modal's socket should be: modal cannot start, so it is not healthy.
    (tmp_path / "providers").mkdir()
    (tmp_path / "providers" / "modal.sock").mkdir()
    chosen = _json(cli(tmp_path, "verse", "select", "full", "--json"))
    baseline = next(r for r in chosen["roles"] if r["role"] == "baseline")
    assert baseline["provider"] == "morph" and baseline["substituted"] is True and chosen["gf3_sum"] == 0
    (tmp_path / "providers" / "gensyn.sock").mkdir()
    refused = cli(tmp_path, "verse", "pipeline", "1069")
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 5 and last.startswith("worldrt: ") and "gensyn" in last
    assert "Traceback" not in refused.stderr


def test_an_unbalanced_pipeline_is_refused_unless_allowed_and_the_audit_names_it(tmp_path: Path) -> None:
    assert cli(tmp_path, "providers", "list").returncode == 0
    con = duckdb.connect(str(tmp_path / "world.duckdb"))
    con.execute("UPDATE runtime_providers SET trit = 0 WHERE provider_id = 'gensyn'")
    con.close()
    refused = cli(tmp_path, "verse", "pipeline", "1069", "--preset", "branch")
    assert refused.returncode == 2 and "refused" in refused.stderr and "--allow-unbalanced" in refused.stderr
    allowed = _json(cli(tmp_path, "verse", "pipeline", "1069", "--preset", "branch", "--allow-unbalanced",
                        "--json"))
    assert allowed["balanced"] is False and allowed["gf3_sum"] == 1
    audit = cli(tmp_path, "audit", "gf3", "--json")
    assert audit.returncode == 1
    assert [r["run_id"] for r in json.loads(audit.stdout)["unbalanced"]] == [allowed["run_id"]]
