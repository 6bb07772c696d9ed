"""The host's import converters (host/runtime/_values.py) against wasmtime-py's own conversion, on the
types a componentize-py component declares, and built once per component rather than at every call."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pytest
from google.protobuf.message import Message
from wasmtime import _ffi as ffi
from wasmtime.component import ComponentInstanceType, FuncType, Record, Variant

from tests.support import CACHE, ROOT, built_example, sample_message
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import (
    OPERATIONS,
    WIT_VERSION,
    CallContext,
    ComponentRuntime,
    ImportCodec,
    LoadedComponent,
    to_wit,
    wit_interface,
)
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons

EXECUTE_LOOP = ROOT / "bench" / "wat" / "execute_loop.wat"


@pytest.fixture(scope="module")
def runtime() -> Iterator[ComponentRuntime]:
    with ProviderDaemon("morph") as morph:
        router = DirectRouter({"generator": morph.channel}, timeout_s=60)
        with ComponentRuntime(router, cache_dir=CACHE / "components") as rt:
            yield rt
        router.close()


@pytest.fixture(scope="module")
def explorer(runtime: ComponentRuntime) -> LoadedComponent:
    return runtime.load(built_example("explorer"))


def _context() -> CallContext:
    return CallContext(verse_id=1, source="test")


def _func(runtime: ComponentRuntime, component: LoadedComponent, interface: str, name: str,
          version: str = WIT_VERSION) -> FuncType:
    instance = component.component.type.imports(runtime.engine)[wit_interface(interface, version)].ty
    assert isinstance(instance, ComponentInstanceType)
    func = instance.exports(runtime.engine)[name].ty
    assert isinstance(func, FuncType)
    return func


@pytest.mark.parametrize("key", list(OPERATIONS), ids=".".join)
def test_the_converters_give_what_wasmtime_py_gives(runtime: ComponentRuntime, explorer: LoadedComponent,
                                                    key: tuple[str, str]) -> None:
    op = OPERATIONS[key]
    func = _func(runtime, explorer, *key)
    codec = ImportCodec(func, op.request, op.reply)

    # A request as the component passes it (wasmtime-py lowers the record), read by the converter.
    request = sample_message(op.request.DESCRIPTOR)
    args = (ffi.wasmtime_component_val_t * 1)()
    func.params[0][1].convert_to_c(None, to_wit(request), ctypes.pointer(args[0]))  # type: ignore[arg-type]
    assert codec.lift(args) == request

    # A reply written by the converter, as the component receives it (wasmtime-py lifts it).
    reply = sample_message(op.reply.DESCRIPTOR)
    results = (ffi.wasmtime_component_val_t * 1)()
    codec.lower_ok(reply, results)
    result_ty = func.result
    assert result_ty is not None
    ok = result_ty.convert_from_c(results[0])
    assert isinstance(ok, Variant) and ok.tag == "ok" and ok.payload == to_wit(reply)
    assert to_wit(reply) != to_wit(op.reply())  # the sample is not all defaults: the comparison means something

    codec.lower_err("NOT_FOUND", "no instance i-9 — ask again", results)
    err = result_ty.convert_from_c(results[0])
    assert isinstance(err, Variant) and err.tag == "err"
    assert isinstance(err.payload, Record)
    assert (err.payload.code, err.payload.message) == ("NOT_FOUND", "no instance i-9 — ask again")


def test_a_component_s_converters_are_built_at_its_first_call_and_kept(runtime: ComponentRuntime,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """wasmtime-py reflects the function type through its C API at every call (the cost this removes):
    here each import of a component is reflected once, on its first call, for all its invocations."""
    built: list[str] = []
    original = ImportCodec.__init__

    def counting(self: ImportCodec, fty: FuncType, request: type[Message], reply: type[Message]) -> None:
        built.append(request.DESCRIPTOR.name)
        original(self, fty, request, reply)

    monkeypatch.setattr(ImportCodec, "__init__", counting)
    loop = runtime.load(EXECUTE_LOOP)
    start = OPERATIONS[("generator", "start")]
    instance_id = runtime.router.call(start, pb.StartRequest(), _context()).instance_id
    assert runtime.invoke(loop, 5, instance_id) == instance_id
    assert runtime.invoke(loop, 3, instance_id) == instance_id
    assert built == ["ExecuteRequest"]


def test_a_component_naming_fewer_fields_gets_its_own_converters(runtime: ComponentRuntime,
                                                                 explorer: LoadedComponent) -> None:
    """stop.wat's instance record has two of the world's fields: the reply carries just those."""
    stop = runtime.load(ROOT / "components" / "examples" / "stop.wat")
    start = OPERATIONS[("generator", "start")]
    instance_id = runtime.router.call(start, pb.StartRequest(), _context()).instance_id
    assert runtime.invoke(stop, 1, instance_id) == instance_id
    func = _func(runtime, stop, "generator", "stop", "0.1.0")  # a WAT component of 0.1.0
    codec = ImportCodec(func, pb.InstanceRef, pb.Instance)
    results = (ffi.wasmtime_component_val_t * 1)()
    codec.lower_ok(pb.Instance(instance_id="i-1", provider_id="morph", snapshot_id="s-1"), results)
    assert func.result is not None
    payload = func.result.convert_from_c(results[0]).payload
    assert vars(payload) == {"instance-id": "i-1", "provider-id": "morph"}

