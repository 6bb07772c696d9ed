"""Components the tests run: the examples and tests/fixtures/components, each built once for the whole
test run (and reused by later runs until its sources, the WIT or componentize-py change)."""

from __future__ import annotations

import os
from pathlib import Path

from worldrt.host.runtime import built_once, source_digest
from worldrt.host.verse import example_component
from worldrt.wit import LATEST, wit_dir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "components" / "examples"
FIXTURES = ROOT / "tests" / "fixtures" / "components"
# One cache of built and compiled components for every test and every worker (hosts in tests share it).
CACHE = ROOT / ".worldrt" / "cache"
os.environ.setdefault("WORLDRT_CACHE", str(CACHE))


def built_example(name: str) -> Path:
    """An example component (~10 s a build, once)."""
    return example_component(name, CACHE / "examples")


def fixture_component(name: str, wit_version: str = LATEST) -> Path:
    """A test component from tests/fixtures/components (Python, or JavaScript when it has a package.json),
    built against worldrt:verse at ``wit_version``."""
    wit = wit_dir(wit_version)
    return built_once(FIXTURES / name, CACHE / "fixtures" / source_digest(FIXTURES / name, wit) / f"{name}.wasm", wit)
