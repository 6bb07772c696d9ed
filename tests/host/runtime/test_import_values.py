"""The host's import converters (host/runtime/_values.py) against wasmtime-py's own conversion, on the
types a componentize-py component declares, and built once per component rather than at every call."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from wasmtime import _ffi as ffi
from wasmtime.component import ComponentInstanceType, FuncType, Record, Variant

from tests.support import ROOT, built_example
from worldrt.host.lattice import DirectRouter
from worldrt.host.runtime import (
    OPERATIONS,
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


def _sample(descriptor: Descriptor, depth: int = 0) -> Message:
    """A message with every field set to something other than its default (nested ones too)."""
    values: dict[str, Any] = {}
    for i, field in enumerate(descriptor.fields, start=1):
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = (field.message_type.fields_by_name[n] for n in ("key", "value"))
            # Two entries given out of order: the WIT list is sorted by key.
            values[field.name] = {_scalar(key_field, i + 1): _scalar(value_field, i),
                                  _scalar(key_field, i): _scalar(value_field, i + 1)}
        elif field.message_type is not None:
            if depth > 2:
                continue
            sub = _sample(field.message_type, depth + 1)
            values[field.name] = [sub, sub] if field.is_repeated else sub
        else:
            values[field.name] = [_scalar(field, i), _scalar(field, i + 7)] if field.is_repeated else _scalar(field, i)
    return GetMessageClass(descriptor)(**values)


def _scalar(field: FieldDescriptor, i: int) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{i}-é"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values[-1].number
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return i + 0.5
    if field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return -(2 ** 40) - i
    if field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return 2 ** 63 + i
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return -i
    return i


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComponentRuntime]:
    with ProviderDaemon("morph") as morph:
        router = DirectRouter({"generator": morph.channel}, timeout_s=60)
        with ComponentRuntime(router, cache_dir=tmp_path_factory.mktemp("cache")) as rt:
            yield rt
        router.close()


@pytest.fixture(scope="module")
def explorer(runtime: ComponentRuntime) -> LoadedComponent:
    return runtime.load(built_example("explorer"))


def _context() -> CallContext:
    return CallContext(verse_id=1, source="test")


def _func(runtime: ComponentRuntime, component: LoadedComponent, interface: str, name: str) -> FuncType:
    instance = component.component.type.imports(runtime.engine)[wit_interface(interface)].ty
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
    request = _sample(op.request.DESCRIPTOR)
    args = (ffi.wasmtime_component_val_t * 1)()
    func.params[0][1].convert_to_c(None, to_wit(request), ctypes.pointer(args[0]))  # type: ignore[arg-type]
    assert codec.lift(args) == request

    # A reply written by the converter, as the component receives it (wasmtime-py lifts it).
    reply = _sample(op.reply.DESCRIPTOR)
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
    func = _func(runtime, stop, "generator", "stop")
    codec = ImportCodec(func, pb.InstanceRef, pb.Instance)
    results = (ffi.wasmtime_component_val_t * 1)()
    codec.lower_ok(pb.Instance(instance_id="i-1", provider_id="morph", snapshot_id="s-1"), results)
    assert func.result is not None
    payload = func.result.convert_from_c(results[0]).payload
    assert vars(payload) == {"instance-id": "i-1", "provider-id": "morph"}

