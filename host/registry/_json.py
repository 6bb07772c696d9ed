"""A message's JSON document as ``MessageToDict(message, preserving_proto_field_name=True)`` makes it, from
converters built once per message type: the registry's writer makes two per invocation row, and
json_format's generic walk over descriptors was most of the writer's time. Well-known types (Timestamp,
Struct, ...) and anything unusual are left to json_format itself."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from worldrt.descriptors import descriptor_of, is_repeated

_ToJson = Callable[[Any], Any]
_INT64 = frozenset((FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64))


def _generic(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _double(value: float) -> Any:
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if math.isnan(value):
        return "NaN"
    return value


def _scalar(field: FieldDescriptor) -> _ToJson | None:
    """The converter of one value of ``field``; None when json_format should do the whole message."""
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        assert field.message_type is not None
        return _converter(field.message_type)
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        enum = field.enum_type
        assert enum is not None
        if enum.full_name == "google.protobuf.NullValue" or any(v.GetOptions().ListFields() for v in enum.values):
            return None
        names = {v.number: v.name for v in enum.values}
        return lambda value: names.get(value, value)
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return lambda value: base64.b64encode(value).decode("utf-8")
        return str
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return bool
    if cpp in _INT64:
        return str
    if cpp == FieldDescriptor.CPPTYPE_DOUBLE:
        return _double
    if cpp == FieldDescriptor.CPPTYPE_FLOAT:
        return None  # json_format rounds float32 to its shortest form
    return lambda value: value


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _map_of(value: _ToJson) -> _ToJson:
    return lambda mapping: {_map_key(k): value(mapping[k]) for k in mapping}


def _list_of(item: _ToJson) -> _ToJson:
    return lambda values: [item(v) for v in values]


@cache
def _converter(descriptor: Descriptor) -> _ToJson:
    if descriptor.full_name.startswith("google.protobuf.") or descriptor.extension_ranges:
        return _generic
    plan: dict[str, _ToJson] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = _scalar(field.message_type.fields_by_name["value"])
            if value is None:
                return _generic
            plan[field.name] = _map_of(value)
        else:
            item = _scalar(field)
            if item is None:
                return _generic
            if is_repeated(field):
                plan[field.name] = _list_of(item)
            else:
                plan[field.name] = item

    def convert(message: Message) -> dict[str, Any]:
        return {field.name: plan[field.name](value) for field, value in message.ListFields()}
    return convert


def message_json(message: Message) -> dict[str, Any]:
    """``MessageToDict(message, preserving_proto_field_name=True)``, faster."""
    return _converter(descriptor_of(message))(message)  # type: ignore[no-any-return]
