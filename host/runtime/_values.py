"""Provider imports without wasmtime-py's per-call reflection: converters between wasmtime's C component
values and protobuf messages, built once per (component, import) from the function type the component
declared, then reused for every call.

wasmtime-py's own ``LinkerInstance.add_func`` path re-reads the function type through the C API on every
call (each record's fields, each list's element, each result's cases: a fresh Python type object per node)
and builds a ``Record`` that ``_codec`` then copies into a message. Here the type is read on the first
call only; later calls read the argument tree straight into the request message and write the reply
straight into the result, with one free of the argument tree instead of one per string. This leans on
wasmtime-py's ctypes layer (``wasmtime._ffi``) and its ``catch_exceptions``: the same C API wasmtime-py
uses, pinned by the wasmtime version in pyproject.toml; tests/host/runtime/test_import_values.py checks that
both paths give the same values. The upstream fix is for wasmtime-py to build its converters once
per function type (to be proposed on bytecodealliance/wasmtime-py issue #140, "calling python from wasm is
too slow", still open); this module stays until a release carries it.

The WIT<->protobuf mapping is ``_codec``'s: kebab-case fields, singular messages as options, maps as
sorted ``list<tuple<k, v>>``, enum cases without the enum's prefix. A record field the message lacks is
read and dropped (lifting) or refused when the converter is built (lowering).
"""

from __future__ import annotations

import ctypes
import itertools
import struct
from collections.abc import Callable
from ctypes import byref, c_char, c_char_p, c_size_t, c_void_p, string_at
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from wasmtime import WasmtimeError
from wasmtime import _ffi as ffi
from wasmtime.component import _types as wt
from wasmtime.component._enter import catch_exceptions

from worldrt.descriptors import descriptor_of, is_map, is_repeated, map_value, message_type
from worldrt.host.runtime._codec import enum_cases, kebab

_Val = Any  # ffi.wasmtime_component_val_t (a ctypes structure)
Lift = Callable[[_Val], Any]
Lower = Callable[[Any, _Val], None]

_BOOL = ffi.WASMTIME_COMPONENT_BOOL.value
_STRING = ffi.WASMTIME_COMPONENT_STRING.value
_LIST = ffi.WASMTIME_COMPONENT_LIST.value
_RECORD = ffi.WASMTIME_COMPONENT_RECORD.value
_TUPLE = ffi.WASMTIME_COMPONENT_TUPLE.value
_ENUM = ffi.WASMTIME_COMPONENT_ENUM.value
_OPTION = ffi.WASMTIME_COMPONENT_OPTION.value
_RESULT = ffi.WASMTIME_COMPONENT_RESULT.value

# wasm_byte_vec_new taking the bytes as they are (wasmtime-py's prototype wants a uint8 pointer, which
# costs a copy into a ctypes array first), and the vector by reference (byref) or by its address.
_byte_vec_new = ctypes.CFUNCTYPE(None, c_void_p, c_size_t, c_char_p)(("wasm_byte_vec_new", ffi.dll))
_valrecord_new_uninit = ffi.wasmtime_component_valrecord_new_uninit
_vallist_new_uninit = ffi.wasmtime_component_vallist_new_uninit
_valtuple_new_uninit = ffi.wasmtime_component_valtuple_new_uninit
_val_new = ffi.wasmtime_component_val_new
_Val_t = ffi.wasmtime_component_val_t
_ValRecord_t = ffi.wasmtime_component_valrecord_t
_Entry_t = ffi.wasmtime_component_valrecord_entry_t
_ValList_t = ffi.wasmtime_component_vallist_t
_ValTuple_t = ffi.wasmtime_component_valtuple_t

_NUMBERS: dict[type, tuple[int, str]] = {
    wt.Bool: (_BOOL, "boolean"),
    wt.S8: (ffi.WASMTIME_COMPONENT_S8.value, "s8"), wt.U8: (ffi.WASMTIME_COMPONENT_U8.value, "u8"),
    wt.S16: (ffi.WASMTIME_COMPONENT_S16.value, "s16"), wt.U16: (ffi.WASMTIME_COMPONENT_U16.value, "u16"),
    wt.S32: (ffi.WASMTIME_COMPONENT_S32.value, "s32"), wt.U32: (ffi.WASMTIME_COMPONENT_U32.value, "u32"),
    wt.S64: (ffi.WASMTIME_COMPONENT_S64.value, "s64"), wt.U64: (ffi.WASMTIME_COMPONENT_U64.value, "u64"),
    wt.F32: (ffi.WASMTIME_COMPONENT_F32.value, "f32"), wt.F64: (ffi.WASMTIME_COMPONENT_F64.value, "f64"),
}


# A reply record's string and number fields are written at their addresses in the entry array (one
# memoryview of it, wasm_byte_vec_new given the address): no ctypes object per field, a quarter of what
# lowering an ExecutionResult cost. Other kinds of field go through the converters below.
_ENTRY_SIZE = ctypes.sizeof(_Entry_t)
_ENTRY_NAME = _Entry_t.name.offset
_ENTRY_KIND = _Entry_t.val.offset + _Val_t.kind.offset
_ENTRY_OF = _Entry_t.val.offset + _Val_t.of.offset
_STRING_FIELD, _NUMBER_FIELD, _OTHER_FIELD = range(3)
_NUMBER_FORMATS = {"boolean": "?", "s8": "b", "u8": "B", "s16": "h", "u16": "H", "s32": "i", "u32": "I",
                   "s64": "q", "u64": "Q", "f32": "f", "f64": "d"}


def _entries(data: Any, size: int) -> tuple[int, memoryview]:
    """The address of a record's entry array and a view of its bytes."""
    address = c_void_p.from_buffer(data).value or 0
    return address, memoryview((c_char * (size * _ENTRY_SIZE)).from_address(address)).cast("B")


def _number_struct(ty: wt.ValType) -> tuple[int, struct.Struct] | None:
    """The kind and in-memory format of a WIT number type (None: not a number)."""
    known = _NUMBERS.get(type(ty))
    return (known[0], struct.Struct("=" + _NUMBER_FORMATS[known[1]])) if known else None


class UnsupportedType(TypeError):
    """A component declared an import whose type does not match the world's message."""


# lifting: C value -> Python/protobuf (read only; the caller frees the whole tree once) -----------------

def _lift_string(c: _Val) -> str:
    vec = c.of.string
    return string_at(vec.data, vec.size).decode("utf-8")


def _lift_bytes(c: _Val) -> bytes:
    vec = c.of.list
    return bytes(vec.data[i].of.u8 for i in range(vec.size))


def _lifter(ty: wt.ValType, field: FieldDescriptor | None) -> Lift:
    """How to read a value of WIT type ``ty`` into what protobuf takes for ``field`` (None: a scalar)."""
    if isinstance(ty, wt.String):
        return _lift_string
    if type(ty) in _NUMBERS:
        attr = _NUMBERS[type(ty)][1]
        return lambda c: getattr(c.of, attr)
    if isinstance(ty, wt.EnumType):
        if field is None or field.type != FieldDescriptor.TYPE_ENUM:
            return _lift_enum_name
        numbers = {name: number for number, name in enum_cases(field.enum_type).items()}
        return lambda c: numbers[_lift_enum_name(c)]
    if isinstance(ty, wt.RecordType):
        if field is None or field.type != FieldDescriptor.TYPE_MESSAGE:
            raise UnsupportedType(f"record {_fields_of(ty)} where the world has no message")
        return _record_lifter(ty, message_type(field))
    if isinstance(ty, wt.OptionType):
        some = _lifter(ty.payload, field)

        def lift_option(c: _Val) -> Any:
            ptr = c.of.option
            return some(ptr.contents) if ptr else None
        return lift_option
    if isinstance(ty, wt.ListType):
        if isinstance(ty.element, wt.U8):
            return _lift_bytes
        if field is not None and is_map(field):
            element = ty.element
            if not isinstance(element, wt.TupleType) or len(element.elements) != 2:
                raise UnsupportedType(f"map field {field.name} as a list of something other than pairs")
            key_ty, value_ty = element.elements
            key, value = _lifter(key_ty, None), _lifter(value_ty, map_value(field))

            def lift_map(c: _Val) -> dict[Any, Any]:
                vec = c.of.list
                out = {}
                for i in range(vec.size):
                    pair = vec.data[i].of.tuple.data
                    out[key(pair[0])] = value(pair[1])
                return out
            return lift_map
        item = _lifter(ty.element, field)

        def lift_list(c: _Val) -> list[Any]:
            vec = c.of.list
            return [item(vec.data[i]) for i in range(vec.size)]
        return lift_list
    if isinstance(ty, wt.TupleType):
        items = [_lifter(e, None) for e in ty.elements]

        def lift_tuple(c: _Val) -> tuple[Any, ...]:
            data = c.of.tuple.data
            return tuple(lift(data[i]) for i, lift in enumerate(items))
        return lift_tuple
    raise UnsupportedType(f"WIT type {type(ty).__name__} has no protobuf mapping in this world")


def _lift_enum_name(c: _Val) -> str:
    vec = c.of.enumeration
    return string_at(vec.data, vec.size).decode("utf-8")


def _fields_of(ty: wt.RecordType) -> str:
    return "{" + ", ".join(name for name, _ in ty.fields) + "}"


def _record_lifter(ty: wt.RecordType, descriptor: Descriptor) -> Callable[[_Val], Message]:
    cls = GetMessageClass(descriptor)
    by_name = {kebab(f.name): f for f in descriptor.fields}
    plan: list[tuple[int, str, Lift]] = []
    for i, (name, field_ty) in enumerate(ty.fields):
        field = by_name.get(name)
        if field is None:
            continue  # a field the world's message lacks: read by wasmtime, dropped here
        plan.append((i, field.name, _lifter(field_ty, field)))

    def lift_record(c: _Val) -> Message:
        data = c.of.record.data
        values = {}
        for i, name, lift in plan:
            value = lift(data[i].val)
            if value is not None:
                values[name] = value
        return cls(**values)
    return lift_record


# lowering: Python/protobuf -> C value (wasmtime takes ownership of what is written) -------------------

def lower_string(value: str, c: _Val) -> None:
    data = value.encode("utf-8")
    c.kind = _STRING
    _byte_vec_new(byref(c.of.string), len(data), data)


def _lowerer(ty: wt.ValType, field: FieldDescriptor | None) -> Lower:
    """How to write a protobuf value for ``field`` (None: a scalar) as a value of WIT type ``ty``."""
    if isinstance(ty, wt.String):
        return lower_string
    if type(ty) in _NUMBERS:
        kind, attr = _NUMBERS[type(ty)]

        def lower_number(value: Any, c: _Val) -> None:
            c.kind = kind
            setattr(c.of, attr, value)
        return lower_number
    if isinstance(ty, wt.EnumType):
        if field is None or field.type != FieldDescriptor.TYPE_ENUM:
            raise UnsupportedType(f"enum {ty.names} where the world has no enum")
        cases = {number: name.encode() for number, name in enum_cases(field.enum_type).items()}
        default = cases[0]

        def lower_enum(value: int, c: _Val) -> None:
            name = cases.get(value, default)
            c.kind = _ENUM
            _byte_vec_new(byref(c.of.enumeration), len(name), name)
        return lower_enum
    if isinstance(ty, wt.RecordType):
        if field is None or field.type != FieldDescriptor.TYPE_MESSAGE:
            raise UnsupportedType(f"record {_fields_of(ty)} where the world has no message")
        return _record_lowerer(ty, message_type(field))
    if isinstance(ty, wt.OptionType):
        some = _lowerer(ty.payload, field)

        def lower_option(value: Any, c: _Val) -> None:
            c.kind = _OPTION
            if value is None:
                c.of.option = None
                return
            raw = _Val_t()
            some(value, raw)
            c.of.option = _val_new(byref(raw))
        return lower_option
    if isinstance(ty, wt.ListType):
        if field is not None and is_map(field):
            element = ty.element
            if not isinstance(element, wt.TupleType) or len(element.elements) != 2:
                raise UnsupportedType(f"map field {field.name} as a list of something other than pairs")
            key_ty, value_ty = element.elements
            key, value = _lowerer(key_ty, None), _lowerer(value_ty, map_value(field))

            def lower_map(mapping: Any, c: _Val) -> None:
                items = sorted(mapping.items())
                raw = _ValList_t()
                _vallist_new_uninit(raw, len(items))
                for i, (k, v) in enumerate(items):
                    pair = _ValTuple_t()
                    _valtuple_new_uninit(pair, 2)
                    key(k, pair.data[0])
                    value(v, pair.data[1])
                    entry = raw.data[i]
                    entry.kind = _TUPLE
                    entry.of.tuple = pair
                c.kind = _LIST
                c.of.list = raw
            return lower_map
        item = _lowerer(ty.element, field)

        def lower_list(values: Any, c: _Val) -> None:
            values = list(values)
            raw = _ValList_t()
            _vallist_new_uninit(raw, len(values))
            for i, v in enumerate(values):
                item(v, raw.data[i])
            c.kind = _LIST
            c.of.list = raw
        return lower_list
    raise UnsupportedType(f"WIT type {type(ty).__name__} has no protobuf mapping in this world")


def _record_lowerer(ty: wt.RecordType, descriptor: Descriptor) -> Callable[[Message, _Val], None]:
    by_name = {kebab(f.name): f for f in descriptor.fields}
    # (how, the entry's index and offset, the WIT name, the message field, optional, what it needs)
    plan: list[tuple[int, int, int, bytes, str, bool, Any]] = []
    for i, (name, field_ty) in enumerate(ty.fields):
        field = by_name.get(name)
        if field is None:
            raise UnsupportedType(f"record field {name!r} is not in {descriptor.name}")
        singular_message = field.type == FieldDescriptor.TYPE_MESSAGE and not is_repeated(field)
        number = _number_struct(field_ty)
        using: Any
        if isinstance(field_ty, wt.String):
            how, using = _STRING_FIELD, None
        elif number is not None:
            how, using = _NUMBER_FIELD, number
        else:
            how, using = _OTHER_FIELD, _lowerer(field_ty, field)
        plan.append((how, i, i * _ENTRY_SIZE, name.encode(), field.name, singular_message, using))
    size = len(plan)

    def lower_record(message: Message, c: _Val) -> None:
        raw = _ValRecord_t()
        _valrecord_new_uninit(raw, size)
        data = raw.data
        address, view = _entries(data, size)
        for how, i, at, wit_name, name, optional, using in plan:
            _byte_vec_new(address + at + _ENTRY_NAME, len(wit_name), wit_name)
            if how == _STRING_FIELD:
                encoded = getattr(message, name).encode("utf-8")
                view[at + _ENTRY_KIND] = _STRING
                _byte_vec_new(address + at + _ENTRY_OF, len(encoded), encoded)
            elif how == _NUMBER_FIELD:
                kind, number = using
                view[at + _ENTRY_KIND] = kind
                number.pack_into(view, at + _ENTRY_OF, getattr(message, name))
            else:
                value = getattr(message, name) if not optional or message.HasField(name) else None
                using(value, data[i].val)
        c.kind = _RECORD
        c.of.record = raw
    return lower_record


# one import's call --------------------------------------------------------------------------------------

class ImportCodec:
    """Reads the request record of one import call and writes its ``result<reply, provider-error>``."""

    def __init__(self, fty: wt.FuncType, request: type[Message], reply: type[Message]) -> None:
        params = fty.params
        result = fty.result
        if len(params) != 1 or not isinstance(params[0][1], wt.RecordType):
            raise UnsupportedType(f"expected one record parameter ({request.DESCRIPTOR.name}), "
                                  f"got {[name for name, _ in params]}")
        if not isinstance(result, wt.ResultType) or result.ok is None or result.err is None:
            raise UnsupportedType("expected a result<record, provider-error>")
        ok, err = result.ok, result.err
        if not isinstance(ok, wt.RecordType) or not isinstance(err, wt.RecordType):
            raise UnsupportedType("expected a result<record, provider-error>")
        self.lift_request = _record_lifter(params[0][1], descriptor_of(request))
        self.lower_reply = _record_lowerer(ok, descriptor_of(reply))
        self._error_fields = [name for name, _ in err.fields]
        for name, field_ty in err.fields:
            if name not in ("code", "message") or not isinstance(field_ty, wt.String):
                raise UnsupportedType(f"provider-error field {name!r} is not code: string or message: string")

    def lift(self, args: Any) -> Message:
        """The request, from the call's argument array; the argument tree is freed here."""
        try:
            return self.lift_request(args[0])
        finally:
            ffi.wasmtime_component_valrecord_delete(byref(args[0].of.record))

    def lower_ok(self, reply: Message, results: Any) -> None:
        raw = _Val_t()
        self.lower_reply(reply, raw)
        out = results[0]
        out.kind = _RESULT
        out.of.result.is_ok = True
        out.of.result.val = _val_new(byref(raw))

    def lower_err(self, code: str, message: str, results: Any) -> None:
        raw = _Val_t()
        record = _ValRecord_t()
        _valrecord_new_uninit(record, len(self._error_fields))
        for i, name in enumerate(self._error_fields):
            entry = record.data[i]
            encoded = name.encode()
            _byte_vec_new(byref(entry.name), len(encoded), encoded)
            lower_string(code if name == "code" else message, entry.val)
        raw.kind = _RECORD
        raw.of.record = record
        out = results[0]
        out.kind = _RESULT
        out.of.result.is_ok = False
        out.of.result.val = _val_new(byref(raw))


# The handler of an import: (store, function type pointer, args, results) -> None; exceptions trap.
Handler = Callable[[Any, Any, Any, Any], None]
_HANDLERS: dict[int, Handler] = {}
_keys = itertools.count(1)


@ffi.wasmtime_component_func_callback_t
def _callback(env, context, ty_raw, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    handler = _HANDLERS[env or 0]

    def run(store: Any) -> None:
        handler(store, ty_raw, args, results)
    return catch_exceptions(context, run)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _finalize(env):  # type: ignore[no-untyped-def]
    _HANDLERS.pop(env or 0, None)  # the linker that held the definition is gone


def func_type(store: Any, ty_raw: Any) -> wt.FuncType:
    """The function type wasmtime passed to a call (owned by the call: not freed here)."""
    return wt.FuncType._from_ptr(ty_raw, owner=store)


def add_import(instance: Any, name: str, handler: Handler) -> None:
    """Define ``name`` in a wasmtime ``LinkerInstance``, called as ``handler(store, ty, args, results)``."""
    instance._assert_not_locked()
    key = next(_keys)
    _HANDLERS[key] = handler
    encoded = name.encode("utf-8")
    error = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(encoded), len(encoded), _callback, key, _finalize)
    if error:
        _HANDLERS.pop(key, None)
        raise WasmtimeError._from_ptr(error)
