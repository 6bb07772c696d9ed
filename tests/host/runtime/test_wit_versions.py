"""A released WIT version never changes: ``worldrt:verse@0.1.0`` is the text of its first release, the host
serves it beside 0.2.0, and components written against 0.1.0 (the explorer's Python sources and the first
JavaScript explorer, both from git history) build against it and run unchanged, with 0.1.0's behaviour: a
start naming an image the provider does not have starts the default image."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from wasmtime.component import ComponentInstanceType

from tests.support import CACHE, ROOT, built_example, fixture_component
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import ComponentRuntime, LoadedComponent, inspect_component, wit_interface
from worldrt.host.verse import pipeline_config
from worldrt.providers.testing import ProviderDaemon
from worldrt.wit import LATEST, WIT_VERSIONS, wit_dir

# The JavaScript explorer takes about a minute to build and another to compile on a fresh machine.
pytestmark = [pytest.mark.daemons, pytest.mark.timeout(900)]

FIRST_RELEASE = "3a1d22c"  # the commit that released worldrt:verse@0.1.0 with the pipeline


@pytest.fixture(scope="module")
def runtime(morph: ProviderDaemon) -> Iterator[ComponentRuntime]:
    with ComponentRuntime(DirectRouter({"generator": morph.channel}, timeout_s=60),
                          cache_dir=CACHE / "components") as rt:
        yield rt


def _without_ids(value: Any) -> Any:
    """A run's summary without the ids of what it made and the snapshot's size (each run makes new ones)."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in ("instance_id", "snapshot_id", "size_bytes")}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _explorer_run(runtime: ComponentRuntime, component: LoadedComponent) -> Any:
    return _without_ids(json.loads(runtime.invoke(component, 1069, json.dumps({"steps": 120}))))


def test_0_1_0_is_the_text_of_its_first_release() -> None:
    released = subprocess.run(["git", "show", f"{FIRST_RELEASE}:components/wit/verse.wit"], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
    if released.returncode != 0:
        pytest.skip(f"this checkout has no git history to compare with: {released.stderr.strip()}")
    assert (wit_dir("0.1.0") / "verse.wit").read_text() == released.stdout
    assert WIT_VERSIONS == ("0.1.0", "0.2.0") and LATEST == "0.2.0"
    latest = (wit_dir() / "verse.wit").read_text()
    assert "package worldrt:verse@0.2.0;" in latest and "argv: list<string>" in latest


def test_the_first_python_explorer_builds_against_0_1_0_and_runs_unchanged(runtime: ComponentRuntime) -> None:
    old = runtime.load(fixture_component("explorer-0.1.0", wit_version="0.1.0"))
    assert set(old.imports) >= {wit_interface("generator", "0.1.0"), wit_interface("log", "0.1.0")}
    assert not any(name.endswith("@0.2.0") for name in old.imports)
    generator = old.component.type.imports(runtime.engine)[wit_interface("generator", "0.1.0")].ty
    assert isinstance(generator, ComponentInstanceType)
    assert "write-files" not in generator.exports(runtime.engine)
    # It starts image "python", which no provider has: in 0.1.0 that is the default image.
    current = runtime.load(built_example("explorer"))
    assert set(current.imports) >= {wit_interface("generator", "0.2.0")}
    assert _explorer_run(runtime, old) == _explorer_run(runtime, current)


def test_the_first_javascript_explorer_builds_against_0_1_0_and_runs_unchanged(runtime: ComponentRuntime) -> None:
    old = runtime.load(fixture_component("explorer-js-0.1.0", wit_version="0.1.0"))
    assert wit_interface("generator", "0.1.0") in old.imports
    current = runtime.load(built_example("explorer-js"))
    assert wit_interface("generator", "0.2.0") in current.imports
    # The old one passes image "python" and, knowing no argv, leaves it out of its execute-requests.
    config = json.dumps({"pipeline": pipeline_config({"brancher"}, 3, baseline=True, strategies=3)})
    summaries = [_without_ids(json.loads(runtime.invoke(component, 1069, config))) for component in (old, current)]
    assert summaries[0] == summaries[1]
    assert [c["rule"] for c in summaries[0]["candidates"]] == ["ma_cross", "mean_revert", "breakout"]


def test_inspect_names_the_version_a_component_selects() -> None:
    old = inspect_component(fixture_component("explorer-0.1.0", wit_version="0.1.0"), cache_dir=CACHE / "components")
    new = inspect_component(built_example("explorer"), cache_dir=CACHE / "components")
    assert (old.wit_versions, new.wit_versions) == (("0.1.0",), ("0.2.0",))
    assert old.problem is None and new.problem is None
