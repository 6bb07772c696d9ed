"""Loaders sharing a cache directory take turns compiling one component: one compiles, the others read its
entry (a Python component is seconds of CPU to compile)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from worldrt.host.runtime import ComponentCache, ComponentLoader, new_engine

pytestmark = pytest.mark.pure

# A component whose compile takes long enough (a few hundred ms) for loaders started together to overlap.
FUNCS = "\n".join(f'(func (export "f{i}") (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const {i})) '
                  "(i32.const 7)))" for i in range(3000))
BIG = f"(component (core module $m {FUNCS}) (core instance $i (instantiate $m)))".encode()


def test_loaders_started_together_compile_a_component_once(tmp_path: Path) -> None:
    start = threading.Barrier(3)
    cached: list[bool] = []

    def load() -> None:
        engine, key = new_engine()  # an engine each, as separate hosts have
        loader = ComponentLoader(engine, ComponentCache(engine, tmp_path, key))
        start.wait(timeout=30)
        cached.append(loader.compile(BIG, "big").cached)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(cached) == [False, True, True]
    assert len(list(tmp_path.glob("*.cwasm"))) == 1


def test_a_cache_directory_that_cannot_be_made_compiles_without_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    engine, key = new_engine()
    loader = ComponentLoader(engine, ComponentCache(engine, tmp_path / "file" / "cache", key))
    tiny = b'(component (core module $m (func (export "f"))) (core instance $i (instantiate $m)))'
    assert not loader.compile(tiny, "tiny").cached
