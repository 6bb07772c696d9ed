"""Protobuf messages <-> the values wasmtime passes for WIT records.

The mapping (components/wit/*/verse.wit follow it): field ``snapshot_id`` is record field ``snapshot-id``; a
singular message field is ``option<record>``; a repeated field is ``list``; a map is
``list<tuple<key, value>>`` (sorted by key); enum value ``MEMORY_AND_DISK`` of ``SnapshotKind`` is case
``memory-and-disk`` and ``INSTANCE_STATUS_UNSPECIFIED`` is ``unspecified`` (the enum's own prefix is dropped,
or as many of its leading words as the value starts with: ``PROCESS_RUNNING`` of ``ProcessState`` is
``running``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from wasmtime.component import Record

from worldrt.descriptors import descriptor_of, is_map, is_repeated, map_value, message_type

_ToWit = Callable[[Any], Any]
_FromWit = Callable[[Any], Any]


def kebab(name: str) -> str:
    return name.replace("_", "-")


def _screaming_prefix(enum: EnumDescriptor) -> str:
    out = []
    for i, ch in enumerate(enum.name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.upper())
    return "".join(out) + "_"


def _case_name(value: str, enum_words: list[str]) -> str:
    """``value`` without the longest run of the enum's leading words it starts with (one word always stays)."""
    words = value.split("_")
    kept = 0
    while kept < len(enum_words) and kept < len(words) - 1 and words[kept] == enum_words[kept]:
        kept += 1
    return "_".join(words[kept:])


@cache
def enum_cases(enum: EnumDescriptor) -> dict[int, str]:
    """The WIT case name of each value of a protobuf enum."""
    enum_words = _screaming_prefix(enum).rstrip("_").split("_")
    return {value.number: kebab(_case_name(value.name, enum_words).lower()) for value in enum.values}


def _scalar_to_wit(field: FieldDescriptor) -> _ToWit:
    if field.type == FieldDescriptor.TYPE_ENUM:
        cases = enum_cases(field.enum_type)
        return lambda v: cases.get(v, cases[0])
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message_to_wit(message_type(field))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes
    return lambda v: v


def _scalar_from_wit(field: FieldDescriptor) -> _FromWit:
    if field.type == FieldDescriptor.TYPE_ENUM:
        numbers = {name: number for number, name in enum_cases(field.enum_type).items()}
        return numbers.__getitem__
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message_from_wit(message_type(field))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes
    return lambda v: v


def _map_to_wit(name: str, value: _ToWit) -> _ToWit:
    return lambda message: [(k, value(v)) for k, v in sorted(getattr(message, name).items())]


def _list_to_wit(name: str, item: _ToWit) -> _ToWit:
    return lambda message: [item(x) for x in getattr(message, name)]


def _option_to_wit(name: str, sub: _ToWit) -> _ToWit:
    return lambda message: sub(getattr(message, name)) if message.HasField(name) else None


def _field_to_wit(name: str, conv: _ToWit) -> _ToWit:
    return lambda message: conv(getattr(message, name))


@cache
def _message_to_wit(descriptor: Descriptor) -> Callable[[Message], Record]:
    fields: list[tuple[str, _ToWit]] = []
    for field in descriptor.fields:
        if is_map(field):
            get = _map_to_wit(field.name, _scalar_to_wit(map_value(field)))
        elif is_repeated(field):
            get = _list_to_wit(field.name, _scalar_to_wit(field))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            get = _option_to_wit(field.name, _message_to_wit(message_type(field)))
        else:
            get = _field_to_wit(field.name, _scalar_to_wit(field))
        fields.append((kebab(field.name), get))

    def convert(message: Message) -> Record:
        record = Record()
        for attr, get in fields:
            setattr(record, attr, get(message))
        return record

    return convert


def _map_from_wit(value: _FromWit) -> _FromWit:
    return lambda pairs: {k: value(v) for k, v in pairs}


def _list_from_wit(item: _FromWit) -> _FromWit:
    return lambda items: [item(x) for x in items]


def _option_from_wit(sub: _FromWit) -> _FromWit:
    return lambda value: None if value is None else sub(value)


@cache
def _message_from_wit(descriptor: Descriptor) -> Callable[[Record], Message]:
    cls = GetMessageClass(descriptor)
    fields: list[tuple[str, str, _FromWit]] = []
    for field in descriptor.fields:
        if is_map(field):
            conv = _map_from_wit(_scalar_from_wit(map_value(field)))
        elif is_repeated(field):
            conv = _list_from_wit(_scalar_from_wit(field))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            conv = _option_from_wit(_message_from_wit(message_type(field)))
        else:
            conv = _scalar_from_wit(field)
        fields.append((kebab(field.name), field.name, conv))

    def convert(record: Record) -> Message:
        values = {}
        for attr, name, conv in fields:
            # A component built before a field was added has no such record field: it stays at its default.
            if hasattr(record, attr):
                value = conv(getattr(record, attr))
                if value is not None:
                    values[name] = value
        return cls(**values)

    return convert


def to_wit(message: Message) -> Record:
    """The record wasmtime lowers into the component for ``message``."""
    return _message_to_wit(descriptor_of(message))(message)


def from_wit(record: Record, message_type: type[Message]) -> Message:
    """The ``message_type`` message for a record the component passed."""
    return _message_from_wit(descriptor_of(message_type))(record)
