"""Messages with every field set to something other than its default, for tests of converters."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass


def sample_message(descriptor: Descriptor, depth: int = 0) -> Message:
    """A message with every field set to something other than its default (nested ones too)."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return GetMessageClass(descriptor)(seconds=1_700_000_000 + depth, nanos=5_000)
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
            sub = sample_message(field.message_type, depth + 1)
            values[field.name] = [sub, sub] if field.is_repeated else sub
        else:
            values[field.name] = [_scalar(field, i), _scalar(field, i + 7)] if field.is_repeated else _scalar(field, i)
    return GetMessageClass(descriptor)(**values)


def _scalar(field: FieldDescriptor, i: int) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{i}-é"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes([i, 0, 255]) + field.name.encode()
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
