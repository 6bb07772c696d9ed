"""Questions about protobuf fields that the WIT codec, the fit check and the registry's redaction ask."""

from __future__ import annotations

from typing import cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def message_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message (or map) field; TypeError for a scalar field."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def map_value(field: FieldDescriptor) -> FieldDescriptor:
    """The value field of a map field's entry."""
    return message_type(field).fields_by_name["value"]


def descriptor_of(message: Message | type[Message]) -> Descriptor:
    """A message's (or message class's) descriptor, typed as the pure-Python one every backend matches."""
    return cast(Descriptor, message.DESCRIPTOR)
