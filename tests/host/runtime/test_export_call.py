"""run's call without wasmtime-py's reflection (host/runtime/_exports.py) gives what wasmtime-py's own call
gives: ok and err strings (empty, non-ASCII, 200 KB), the whole u64 range of verse ids, and traps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.components import EXAMPLES
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import ComponentRuntime, ComponentTrap, GuestError, Invocation, LoadedComponent

pytestmark = pytest.mark.pure
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "wat"

# run(verse-id, args) returns args: ok when verse-id is even, err when odd.
PARITY = """
(component
  (core module $libc
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param $old i32) (param $old-size i32) (param $align i32) (param $size i32) (result i32)
      (local $ptr i32)
      (local.set $ptr (global.get $next))
      (global.set $next (i32.add (local.get $ptr) (local.get $size)))
      (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1)))
                          (i32.const -1))
                (then unreachable))))
      (local.get $ptr)))
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $memory))
  (alias core export $libc "realloc" (core func $realloc))
  (core module $main
    (import "libc" "memory" (memory 1))
    (func (export "run") (param $verse-id i64) (param $ptr i32) (param $len i32) (result i32)
      (i32.store8 (i32.const 0) (i32.wrap_i64 (i64.and (local.get $verse-id) (i64.const 1))))
      (i32.store (i32.const 4) (local.get $ptr))
      (i32.store (i32.const 8) (local.get $len))
      (i32.const 0)))
  (core instance $main (instantiate $main (with "libc" (instance $libc))))
  (func $run (param "verse-id" u64) (param "args" string) (result (result string (error string)))
    (canon lift (core func $main "run") (memory $memory) (realloc $realloc)))
  (export "run" (func $run)))
"""

ARGS = ["", "x", "π → ✓ 😀", "a" * 200_000]
VERSES = [0, 1, 2, 2**63, 2**64 - 2, 2**64 - 1]


@pytest.fixture(params=["fast", "wasmtime-py"])
def runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> Iterator[ComponentRuntime]:
    if request.param == "wasmtime-py":
        monkeypatch.setattr("worldrt.host.runtime._invoke.is_run_type", lambda _fty: False)
    with ComponentRuntime(DirectRouter({}), cache_dir=tmp_path) as rt:
        yield rt


def _outcome(runtime: ComponentRuntime, component: LoadedComponent, verse_id: int, args: str) -> tuple[str, str]:
    try:
        invocation: Invocation = runtime.invoke_detailed(component, verse_id, args)
    except GuestError as exc:
        assert exc.invocation.value == str(exc)
        return "err", str(exc)
    return "ok", invocation.value


def test_ok_and_err_strings_and_every_verse_id_come_back_as_given(runtime: ComponentRuntime) -> None:
    parity = runtime.load_bytes(PARITY.encode(), "parity")
    for verse_id in VERSES:
        for args in ARGS:
            assert _outcome(runtime, parity, verse_id, args) == ("err" if verse_id % 2 else "ok", args)


def test_a_component_that_logs_returns_its_args(runtime: ComponentRuntime) -> None:
    tiny = runtime.load(EXAMPLES / "tiny.wat")
    logged: list[tuple[str, str]] = []
    assert runtime.invoke(tiny, 7, "hello π", on_log=lambda level, line: logged.append((level, line))) == "hello π"
    assert logged == [("info", "hello π")]


def test_a_trap_is_the_same_trap(runtime: ComponentRuntime) -> None:
    trap = runtime.load(FIXTURES / "trap.wat")
    with pytest.raises(ComponentTrap, match="trap.*divide by zero"):
        runtime.invoke(trap, 1, "x")
    parity = runtime.load_bytes(PARITY.encode(), "parity")
    assert runtime.invoke(parity, 2, "the runtime goes on") == "the runtime goes on"


def test_an_argument_of_the_wrong_type_is_refused_before_the_call(runtime: ComponentRuntime) -> None:
    parity = runtime.load_bytes(PARITY.encode(), "parity")
    with pytest.raises(ComponentTrap, match="TypeError"):
        runtime.invoke(parity, "1", "x")  # type: ignore[arg-type]
    assert runtime.invoke(parity, 4, "still fine") == "still fine"
