"""JavaScript components built with componentize-js from the npm registry (pinned by their lock files):
the explorer-js example in the morph role against a real morph daemon, checked against the market code run
here; a build with componentize-js's defaults (wasi:http) refused with the reason and the flags; the WIT's
JavaScript mapping (u64 as BigInt, thrown strings as err); and a thrown Error object reported with the
component's stderr."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import CACHE, EXAMPLES, FIXTURES, built_example, cli, fixture_component
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import (
    ComponentError,
    ComponentRuntime,
    ComponentTrap,
    GuestError,
    LoadedComponent,
    built_once,
    inspect_component,
    source_digest,
)
from worldrt.host.verse import pipeline_config
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb
from worldrt.wit import WIT_DIR

# A JavaScript component takes about a minute to build (npm ci, componentize-js) and another to compile the
# first time, more on a busy machine: the builds are cached, but a fresh machine makes them in this module.
pytestmark = [pytest.mark.daemons, pytest.mark.timeout(900)]

RULES = ["ma_cross", "mean_revert", "breakout"]


def _market() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("explorer_market", EXAMPLES / "explorer" / "market.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    namespace: dict[str, Any] = {"SOURCE": module.SOURCE}
    exec(module.SOURCE, namespace)
    return namespace


@pytest.fixture(scope="module")
def runtime(morph: ProviderDaemon) -> Iterator[ComponentRuntime]:
    # Compiled components come from the shared cache: a JavaScript component takes a minute to compile.
    router = DirectRouter({"generator": morph.channel}, timeout_s=60)
    with ComponentRuntime(router, cache_dir=CACHE / "components") as rt:
        yield rt


@pytest.fixture(scope="module")
def explorer_js(runtime: ComponentRuntime) -> LoadedComponent:
    return runtime.load(built_example("explorer-js"))


@pytest.fixture(scope="module")
def probe(runtime: ComponentRuntime) -> LoadedComponent:
    return runtime.load(fixture_component("jsprobe"))


@pytest.fixture(scope="module")
def defaults_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The jsprobe fixture built with componentize-js's default features (no --disable)."""
    src = tmp_path_factory.mktemp("jsdefaults") / "jsprobe"
    shutil.copytree(FIXTURES / "jsprobe", src, ignore=shutil.ignore_patterns("node_modules"))
    package = json.loads((src / "package.json").read_text())
    assert " --disable http fetch-event" in package["scripts"]["build"]
    package["scripts"]["build"] = package["scripts"]["build"].replace(" --disable http fetch-event", "")
    (src / "package.json").write_text(json.dumps(package, indent=2))
    return built_once(src, CACHE / "fixtures" / source_digest(src, WIT_DIR) / "jsprobe-defaults.wasm")


def _stopped(morph: ProviderDaemon, instance_id: str) -> bool:
    try:
        morph.stub.Execute(pb.ExecuteRequest(instance_id=instance_id, code="1"), timeout=10)
    except grpc.RpcError as exc:
        return exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    return False


def test_market_js_is_the_python_explorers_market() -> None:
    node = shutil.which("node")
    assert node, "node is needed to build JavaScript components (.ci/setup installs it)"
    out = subprocess.run([node, "--input-type=module", "-e",
                          "import { SOURCE } from './market.js'; process.stdout.write(SOURCE);"],
                         cwd=EXAMPLES / "explorer-js", capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == _market()["SOURCE"]


def test_a_build_with_componentize_js_defaults_is_refused_naming_wasi_http_and_the_flags(
        runtime: ComponentRuntime, defaults_build: Path) -> None:
    with pytest.raises(ComponentError) as info:
        runtime.load(defaults_build)
    message = str(info.value)
    assert message.startswith(f"{defaults_build} imports wasi:http/outgoing-handler@0.2.10 and "
                              "wasi:http/types@0.2.10, which this host does not provide"), message
    assert "leaves it out with `--disable http fetch-event`" in message and "\n" not in message
    inspected = inspect_component(defaults_build, cache_dir=CACHE / "components")
    assert inspected.problem == message.replace(str(defaults_build), defaults_build.name, 1)
    assert "wasi:http/types@0.2.10" in inspected.imports


def test_explorer_js_does_the_morph_role_against_a_real_morph_daemon(
        runtime: ComponentRuntime, explorer_js: LoadedComponent, morph: ProviderDaemon) -> None:
    assert "wasi:http/types@0.2.10" not in explorer_js.imports
    logged: list[tuple[str, str]] = []
    config = pipeline_config({"brancher"}, 3, baseline=True, strategies=3)
    outcome = runtime.invoke_detailed(explorer_js, 1069, json.dumps({"pipeline": config}),
                                      on_log=lambda level, message: logged.append((level, message)))
    summary = json.loads(outcome.value)

    market = _market()
    prices = market["make_market"](1069, steps=252)
    baseline = market["backtest"](prices, "ma_cross", {"fast": 5, "slow": 20})
    assert summary["baseline"] == {"rule": "ma_cross", "params": {"fast": 5, "slow": 20},
                                   "value": baseline["profit"], "trades": baseline["trades"]}
    candidates = summary["candidates"]
    assert [c["rule"] for c in candidates] == RULES
    assert len({c["instance_id"] for c in candidates}) == 3
    for c in candidates:
        assert c["value"] == market["trajectory_claim"](prices, c["rule"], {}, 5.0)["profit"]
        assert c["params"] == {} and c["verified"] is True
    best = max(candidates, key=lambda c: c["value"])
    assert summary["winner"] == {k: best[k] for k in ("rule", "params", "value", "verified")}
    assert summary["wev"] == pytest.approx(best["value"] - baseline["profit"], abs=1e-6)
    assert summary["snapshot"]["kind"] == "MEMORY_AND_DISK" and summary["snapshot"]["size_bytes"] > 0
    assert summary["verse_id"] == 1069 and summary["mode"] == "pipeline"
    # baseline: start, 2 executes, stop; then start, execute, snapshot, branch, 3 executes, merge, 2 stops
    assert summary["provider_calls"] == outcome.provider_calls == 14
    assert all(_stopped(morph, c["instance_id"]) for c in candidates)
    assert ("info", f"baseline ma_cross: {baseline['profit']}") in logged


def test_explorer_js_refuses_what_it_does_not_do_with_an_err(
        runtime: ComponentRuntime, explorer_js: LoadedComponent) -> None:
    with pytest.raises(GuestError, match=r"^args is not JSON: "):
        runtime.invoke(explorer_js, 1, "{")
    config = pipeline_config({"brancher", "optimizer"}, 2, baseline=False)
    with pytest.raises(GuestError, match="explorer-js does the morph role .* only, not optimize"):
        runtime.invoke(explorer_js, 1, json.dumps({"pipeline": config}))


def test_the_wit_in_javascript_u64_is_a_bigint_and_a_thrown_string_is_the_err(
        runtime: ComponentRuntime, probe: LoadedComponent, morph: ProviderDaemon) -> None:
    assert json.loads(runtime.invoke(probe, 2**64 - 1, "x")) == {
        "verse": "18446744073709551615", "type": "bigint", "args": "x"}
    with pytest.raises(GuestError) as info:
        runtime.invoke(probe, 1, "throw-string")
    assert info.value.message == "a thrown string"
    instance_id = runtime.invoke(probe, 1, "instance")
    assert instance_id.startswith("i-") and _stopped(morph, instance_id)


def test_a_thrown_error_object_traps_with_the_components_stderr_and_no_memory_guess(
        runtime: ComponentRuntime, probe: LoadedComponent) -> None:
    seen: list[tuple[str, bytes]] = []
    with pytest.raises(ComponentTrap) as info:
        runtime.invoke(probe, 1, "throw-error", on_output=lambda stream, data: seen.append((stream, data)))
    message = str(info.value)
    assert message.startswith("jsprobe trapped: wasm trap: wasm `unreachable` instruction executed; "
                              "its stderr ended with: "), message
    assert "about to fail: the strategy table is empty" in message and "\n" not in message
    assert "memory" not in message
    assert b"about to fail" in b"".join(data for stream, data in seen if stream == "stderr")
    assert runtime.invoke(probe, 1, "x")  # the host goes on


def test_component_output_stays_off_the_cli_stdout_and_json_parses(
        tmp_path: Path, probe: LoadedComponent) -> None:
    assert probe.path is not None
    shown = cli(tmp_path, "component", "run", str(probe.path), "--verse", "1", "--args", "print")
    assert shown.returncode == 0, shown.stderr
    assert "a line on" not in shown.stdout and "printed" in shown.stdout
    assert "a line on stdout\n" in shown.stderr and "a line on stderr\n" in shown.stderr
    as_json = cli(tmp_path, "component", "run", str(probe.path), "--verse", "1", "--args", "print", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert (data["value"], data["stdout"], data["stderr"]) == ("printed", "a line on stdout\n", "a line on stderr\n")
    assert "a line on" not in as_json.stderr


def test_verse_run_on_morph_with_the_js_explorer_from_the_command_line(tmp_path: Path) -> None:
    wasm = built_example("explorer-js")
    out = cli(tmp_path, "verse", "run", "1069", "--on", "morph", "--component", str(wasm), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["result"]
    prices = _market()["make_market"](1069, steps=252)
    values = {c["rule"]: c["value"] for c in result["candidates"]}
    assert values == {rule: _market()["trajectory_claim"](prices, rule, {}, 5.0)["profit"] for rule in RULES}
    assert result["winner"]["value"] == max(values.values())
