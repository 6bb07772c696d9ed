"""What the registry keeps of a provider call: env values and link secrets redacted, big fields capped.

* ``env`` maps keep their keys; every value becomes ``<redacted>``.
* Each secret of the call's link (``LinkConfig.secrets`` values and the legacy value ``token``) is
  replaced by ``<redacted>`` in every string of the row.
* ``stdout``, ``stderr``, ``code``, ``objective_code`` and ``program_code`` keep their first
  ``cap_bytes`` bytes; a field cut short gets its full size beside it as ``<field>_bytes``.

Messages are redacted as protobuf (a copy, made only when something changes), so the call path stays
cheap; their JSON is made later by the registry's writer, which adds the ``_bytes`` sizes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from worldrt.descriptors import descriptor_of, is_map, is_repeated, map_value, message_type

REDACTED = "<redacted>"
CAPPED_FIELDS = frozenset({"stdout", "stderr", "code", "objective_code", "program_code"})
ENV_FIELDS = frozenset({"env"})
DEFAULT_CAP_BYTES = 4096
_ENCODER = json.JSONEncoder(default=str)

# A field path inside a message: names and, for repeated fields, indexes.
Path = tuple[str | int, ...]
Sizes = tuple[tuple[Path, int], ...]


class _Plan(NamedTuple):
    """The fields of one message type that redaction looks at."""

    env: tuple[str, ...]
    capped: tuple[str, ...]
    # (name, repeated) of message fields whose type has something to redact
    messages: tuple[tuple[str, bool], ...]


class Payload(NamedTuple):
    """A row's params or result as the journal keeps it: ``kind`` is ``b"j"`` for JSON text in ``data``, or
    ``b"p"`` and the message type's name for serialized protobuf in ``data``; ``sizes`` are the full
    sizes of the fields cut short (``stdout=102400;...``), and ``message`` the redacted message itself
    while this process holds it (None once read back from the journal)."""

    kind: bytes
    data: bytes
    sizes: bytes = b""
    message: Message | None = None


_EMPTY = _Plan((), (), ())
_plans: dict[str, _Plan] = {}
# Per message type: its payload kind, its env field (if it has exactly one), and whether that and its
# size are all ``Redactor.payload`` must look at (no other env field, no message field to descend into).
_kinds: dict[type, tuple[bytes, str | None, bool]] = {}


def _kind_of(message: Message) -> tuple[bytes, str | None, bool]:
    plan = _plan_of(message)
    entry = (b"p" + message.DESCRIPTOR.full_name.encode(), plan.env[0] if len(plan.env) == 1 else None,
             not plan.messages and len(plan.env) <= 1)
    _kinds[type(message)] = entry
    return entry


def _plan(descriptor: Descriptor) -> _Plan:
    plan = _plans.get(descriptor.full_name)
    if plan is not None:
        return plan
    _plans[descriptor.full_name] = _EMPTY  # a recursive type sees itself as having nothing to redact
    env, capped, messages = [], [], []
    for field in descriptor.fields:
        if field.name in ENV_FIELDS and is_map(field):
            env.append(field.name)
        elif field.name in CAPPED_FIELDS and field.type == FieldDescriptor.TYPE_STRING and not is_repeated(field):
            capped.append(field.name)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not is_map(field) and _plan(message_type(field)) != _EMPTY:
            messages.append((field.name, is_repeated(field)))
    plan = _plans[descriptor.full_name] = _Plan(tuple(env), tuple(capped), tuple(messages))
    return plan


_plans_by_type: dict[type, _Plan] = {}


def _plan_of(message: Message) -> _Plan:
    plan = _plans_by_type.get(type(message))
    if plan is None:
        plan = _plans_by_type[type(message)] = _plan(descriptor_of(message))
    return plan


def cap_text(text: str, cap_bytes: int) -> tuple[str, int]:
    """``text`` cut to at most ``cap_bytes`` bytes of UTF-8 (never mid-character), and its full size."""
    data = text.encode()
    if len(data) <= cap_bytes:
        return text, len(data)
    return data[:cap_bytes].decode("utf-8", "ignore"), len(data)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


class Redactor:
    """Redacts the rows of one registry, which caps fields at ``cap_bytes``."""

    def __init__(self, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        if cap_bytes < 0:
            raise ValueError(f"the output cap must be 0 bytes or more, got {cap_bytes}")
        self.cap_bytes = cap_bytes
        # Below this many characters a string cannot exceed the cap (UTF-8 needs at most 4 bytes each).
        self._short = cap_bytes // 4

    # protobuf ------------------------------------------------------------------------------------
    def _needs(self, message: Message) -> bool:
        env, capped, messages = _plan_of(message)
        for name in env:
            if len(getattr(message, name)):
                return True
        for name in capped:
            text = getattr(message, name)
            if len(text) > self._short and len(text.encode()) > self.cap_bytes:
                return True
        for name, repeated in messages:
            if repeated:
                if any(self._needs(sub) for sub in getattr(message, name)):
                    return True
            elif message.HasField(name) and self._needs(getattr(message, name)):
                return True
        return False

    def _apply(self, message: Message, path: Path, sizes: list[tuple[Path, int]]) -> None:
        env, capped, messages = _plan_of(message)
        for name in env:
            values = getattr(message, name)
            for key in list(values):
                values[key] = REDACTED
        for name in capped:
            text = getattr(message, name)
            if len(text) > self._short:
                cut, size = cap_text(text, self.cap_bytes)
                if size > self.cap_bytes:
                    setattr(message, name, cut)
                    sizes.append(((*path, name), size))
        for name, repeated in messages:
            if repeated:
                for index, sub in enumerate(getattr(message, name)):
                    self._apply(sub, (*path, name, index), sizes)
            elif message.HasField(name):
                self._apply(getattr(message, name), (*path, name), sizes)

    def message(self, message: Message, secrets: tuple[str, ...] = ()) -> tuple[Message, Sizes]:
        """``message`` as the registry keeps it (itself when nothing changes), and the full sizes of the
        fields it cut."""
        if secrets:
            secrets = tuple(s for s in secrets if s)
        if not secrets and not self._needs(message):
            return message, ()
        stored = type(message)()
        stored.CopyFrom(message)
        sizes: list[tuple[Path, int]] = []
        if secrets:
            _scrub_message(stored, secrets)
        self._apply(stored, (), sizes)
        return stored, tuple(sizes)

    def payload(self, message: Message, secrets: tuple[str, ...] = ()) -> Payload:
        """The journal's form of ``message`` once redacted. When its serialized form fits in the cap and it
        has no env values (nor secrets to scrub), nothing can need redaction: the call path's usual case."""
        kind, env_name, flat = _kinds.get(type(message)) or _kind_of(message)
        data = message.SerializeToString()
        if flat and not secrets and len(data) <= self.cap_bytes and (env_name is None
                                                                     or not len(getattr(message, env_name))):
            return Payload(kind, data, b"", message)
        stored, sizes = self.message(message, secrets)
        if stored is message:
            return Payload(kind, data, b"", message)
        return Payload(kind, stored.SerializeToString(), encode_sizes(sizes), stored)

    def json_payload(self, value: Any, secrets: tuple[str, ...] = ()) -> Payload:
        return Payload(b"j", self.json_text(value, secrets).encode())

    # JSON values ---------------------------------------------------------------------------------
    def _value(self, value: Any, secrets: tuple[str, ...]) -> Any:
        if isinstance(value, str):
            return scrub(value, secrets) if secrets else value
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if key in ENV_FIELDS and isinstance(item, dict):
                    out[key] = dict.fromkeys(item, REDACTED)
                    continue
                kept = self._value(item, secrets)
                if key in CAPPED_FIELDS and isinstance(kept, str):
                    kept, size = cap_text(kept, self.cap_bytes)
                    if size > self.cap_bytes:
                        out[f"{key}_bytes"] = size
                out[key] = kept
            return out
        if isinstance(value, (list, tuple)):
            return [self._value(item, secrets) for item in value]
        return value

    def json_text(self, value: Any, secrets: tuple[str, ...] = ()) -> str:
        """The JSON the registry keeps of a plain value (a dict, a list, a string ...)."""
        secrets = tuple(s for s in secrets if s)
        text = _ENCODER.encode(self._value(value, secrets))
        if secrets:
            # Also each secret as JSON escapes it, and any a default=str conversion let through.
            text = scrub(text, secrets + tuple(json.dumps(s)[1:-1] for s in secrets))
        return text


def _scrub_message(message: Message, secrets: tuple[str, ...]) -> None:
    for field, value in message.ListFields():
        if is_map(field):
            value_field = map_value(field)
            items = list(value.items())
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for _, sub in items:
                    _scrub_message(sub, secrets)
            elif value_field.type == FieldDescriptor.TYPE_STRING:
                value.clear()
                for key, text in items:
                    value[scrub(key, secrets) if isinstance(key, str) else key] = scrub(text, secrets)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for sub in (value if is_repeated(field) else (value,)):
                _scrub_message(sub, secrets)
        elif field.type == FieldDescriptor.TYPE_STRING:
            if is_repeated(field):
                value[:] = [scrub(text, secrets) for text in value]
            else:
                setattr(message, field.name, scrub(value, secrets))
        elif field.type == FieldDescriptor.TYPE_BYTES:
            raw = tuple(s.encode() for s in secrets)
            if is_repeated(field):
                value[:] = [_scrub_bytes(data, raw) for data in value]
            else:
                setattr(message, field.name, _scrub_bytes(value, raw))


def _scrub_bytes(data: bytes, secrets: tuple[bytes, ...]) -> bytes:
    for secret in secrets:
        data = data.replace(secret, REDACTED.encode())
    return data


def encode_sizes(sizes: Sizes) -> bytes:
    return ";".join(".".join(map(str, path)) + f"={size}" for path, size in sizes).encode()


def decode_sizes(data: bytes) -> Sizes:
    parsed: list[tuple[Path, int]] = []
    for item in data.decode().split(";") if data else ():
        path, _, size = item.rpartition("=")
        parsed.append((tuple(int(p) if p.isdigit() else p for p in path.split(".")), int(size)))
    return tuple(parsed)


def add_sizes(document: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    """Put each cut field's full size beside it (``stdout_bytes`` beside ``stdout``) in a message's JSON."""
    for path, size in sizes:
        node: Any = document
        for step in path[:-1]:
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node[f"{path[-1]}_bytes"] = size
    return document
