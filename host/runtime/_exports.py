"""The world's export ``run: func(verse-id: u64, args: string) -> result<string, string>`` called without
wasmtime-py's per-call reflection.

wasmtime-py's ``Func.__call__`` reads the function's type through the C API on every call (each parameter,
the result and its cases) and converts through those fresh type objects: about 50 µs an invocation, more
than instantiating a small component. Here the type is checked once per component and each call writes the
two arguments and reads the result straight from wasmtime's C values, through the same C API and trap
handling (``enter_wasm``) that wasmtime-py's own call uses (``_values`` does the same for imports).
tests/host/runtime/test_export_call.py checks both paths give the same outcomes.
"""

from __future__ import annotations

from ctypes import byref, string_at
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import Func
from wasmtime.component import _types as wt
from wasmtime.component._enter import enter_wasm

from worldrt.host.runtime._values import lower_string

_U64 = ffi.WASMTIME_COMPONENT_U64.value
_RESULT = ffi.WASMTIME_COMPONENT_RESULT.value
_STRING = ffi.WASMTIME_COMPONENT_STRING.value


def is_run_type(fty: wt.FuncType) -> bool:
    """Whether ``fty`` is ``func(u64, string) -> result<string, string>``."""
    params, result = fty.params, fty.result
    return (len(params) == 2 and isinstance(params[0][1], wt.U64) and isinstance(params[1][1], wt.String)
            and isinstance(result, wt.ResultType) and isinstance(result.ok, wt.String)
            and isinstance(result.err, wt.String))


def call_run(store: Any, func: Func, verse_id: int, args: str) -> tuple[bool, str]:
    """Call ``func`` (of ``is_run_type``) with ``verse_id`` and ``args``: (whether it returned ok, its string).

    A trap, or an exception a host function raised during the call, is raised as wasmtime-py raises it."""
    if not isinstance(verse_id, int) or not isinstance(args, str):
        raise TypeError("run takes an int verse id and a str of args")
    params = (ffi.wasmtime_component_val_t * 2)()
    params[0].kind = _U64
    params[0].of.u64 = verse_id
    lower_string(args, params[1])
    result = ffi.wasmtime_component_val_t()
    try:
        enter_wasm(lambda: ffi.wasmtime_component_func_call(byref(func._func), store._context(), params, 2,
                                                            byref(result), 1))
        try:
            if result.kind != _RESULT:
                raise TypeError(f"run returned a value of kind {result.kind}, expected a result")
            outcome = result.of.result
            payload = outcome.val.contents if outcome.val else None
            if payload is None or payload.kind != _STRING:
                raise TypeError("run's result carries no string")
            text = string_at(payload.of.string.data, payload.of.string.size).decode("utf-8")
            return bool(outcome.is_ok), text
        finally:
            ffi.wasmtime_component_val_delete(byref(result))
    finally:
        ffi.wasmtime_component_val_delete(byref(params[0]))
        ffi.wasmtime_component_val_delete(byref(params[1]))
