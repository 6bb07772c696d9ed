"""The registry's journal: each invocation row, already redacted, appended before its caller sees the result.

Each row is copied into a shared mapping of the file, no fsync: a row survives SIGKILL of the host (it
is in the kernel's page cache at once) but not a crash of the machine before the page cache reaches the
disk. The writer thread moves rows into DuckDB and truncates the journal whenever every
row in it is there; ``Registry.open`` replays what an ended process left in it.

A record is ``magic | u32 body length | u32 crc32(body) | body``; reading skips a torn or damaged
record. The body holds the row's fields, then startup_ms and the replica (each absent from records of
older versions, which readers take as 0 and ""; older readers ignore what follows the fields they know); a
protobuf payload is kept as its serialized bytes and type name (its JSON is made by the writer), a plain
value as its JSON (``Payload`` of host/registry/_redaction.py).
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from worldrt.host.registry._redaction import Payload

MAGIC = b"WJr1"
_HEAD = struct.Struct("<4sII")
_FIELDS = 10
_BODY_HEAD = struct.Struct(f"<ddd{_FIELDS}I")
# The journal grows by at least this much at a time (rows are a few hundred bytes).
_CHUNK = 1 << 20
_STARTUP = struct.Struct("<d")
_LENGTH = struct.Struct("<I")


_classes: dict[str, type[Message]] = {}


def message_of(payload: Payload) -> Message:
    """The message a protobuf payload holds (parsed from its bytes when read back from the journal)."""
    if payload.message is not None:
        return payload.message
    message = _message_class(payload.kind[1:].decode())()
    message.ParseFromString(payload.data)
    return message


def _message_class(full_name: str) -> type[Message]:
    cls = _classes.get(full_name)
    if cls is None:
        cls = _classes[full_name] = message_factory.GetMessageClass(
            descriptor_pool.Default().FindMessageTypeByName(full_name))
    return cls


class Row(NamedTuple):
    """One ``provider_invocations`` row as the journal and the writer hold it."""

    invocation_id: str
    provider_id: str
    operation: str
    verse_id: str
    input_params: Payload
    output_result: Payload
    latency_ms: float
    cost_units: float
    invoked_at: float
    startup_ms: float = 0.0
    # The lattice host that recorded the row (set by the registry from the subject it came on; not journaled).
    host_id: str | None = None
    # The lattice replica that answered the call ("" when the host's own daemon did).
    replica: str = ""

    def journal_record(self) -> bytes:
        """The journal record of this row."""
        in_kind, in_data, in_sizes, _ = self.input_params
        out_kind, out_data, out_sizes, _ = self.output_result
        ident, provider, operation, verse = (self.invocation_id.encode(), self.provider_id.encode(),
                                             self.operation.encode(), self.verse_id.encode())
        replica = self.replica.encode()
        body = b"".join((
            _BODY_HEAD.pack(self.latency_ms, self.cost_units, self.invoked_at, len(ident), len(provider),
                            len(operation), len(verse), len(in_kind), len(in_data), len(in_sizes), len(out_kind),
                            len(out_data), len(out_sizes)),
            ident, provider, operation, verse, in_kind, in_data, in_sizes, out_kind, out_data, out_sizes,
            _STARTUP.pack(self.startup_ms), _LENGTH.pack(len(replica)), replica))
        return _HEAD.pack(MAGIC, len(body), zlib.crc32(body)) + body

    @classmethod
    def from_body(cls, body: bytes, host_id: str | None = None) -> Row:
        latency, cost, at, *lengths = _BODY_HEAD.unpack_from(body)
        parts, offset = [], _BODY_HEAD.size
        for length in lengths:
            parts.append(body[offset:offset + length])
            offset += length
        ident, provider, operation, verse = (p.decode() for p in parts[:4])
        params, result = Payload(parts[4], parts[5], parts[6]), Payload(parts[7], parts[8], parts[9])
        # Records written before startup_ms (or the replica) existed end sooner.
        startup, replica = 0.0, ""
        if len(body) - offset >= _STARTUP.size:
            startup = _STARTUP.unpack_from(body, offset)[0]
            offset += _STARTUP.size
            if len(body) - offset >= _LENGTH.size:
                (length,) = _LENGTH.unpack_from(body, offset)
                replica = body[offset + _LENGTH.size:offset + _LENGTH.size + length].decode()
        return cls(ident, provider, operation, verse, params, result, latency, cost, at, startup, host_id, replica)


def parse_record(record: bytes, host_id: str | None = None) -> Row | None:
    """The row in one journal record (None when it is torn, damaged or not a record), with ``host_id`` set."""
    if len(record) < _HEAD.size or not record.startswith(MAGIC):
        return None
    _, length, crc = _HEAD.unpack_from(record)
    body = record[_HEAD.size:]
    if len(body) != length or zlib.crc32(body) != crc:
        return None
    try:
        return Row.from_body(body, host_id)
    except (struct.error, ValueError, KeyError, UnicodeDecodeError):
        return None


def read_rows(path: Path) -> list[Row]:
    """Every intact row in the journal at ``path``, in order; torn or damaged records are skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    rows: list[Row] = []
    offset = 0
    while (start := data.find(MAGIC, offset)) >= 0:
        if start + _HEAD.size > len(data):
            break
        _, length, crc = _HEAD.unpack_from(data, start)
        body = data[start + _HEAD.size:start + _HEAD.size + length]
        if len(body) == length and zlib.crc32(body) == crc:
            try:
                rows.append(Row.from_body(body))
            except (struct.error, ValueError, KeyError, UnicodeDecodeError):
                offset = start + 1
                continue
            offset = start + _HEAD.size + length
        else:
            offset = start + 1
    return rows


class Journal:
    """The open journal file (mode 0600), written through a shared memory mapping: an append is a copy into
    the page cache, which the kernel owns (it survives SIGKILL of the host as a write(2) would), without a
    system call per row. The file grows in chunks allocated up front (posix_fallocate: a full disk is an
    OSError at growth, never a SIGBUS at a write); the unused tail of a chunk is zeros, which reading skips,
    and is cut off at ``close``. Callers serialize ``append`` and ``truncate`` themselves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._capacity = 0
        self.size = 0
        self.identity = (0, 0)
        self.reopen()

    def reopen(self) -> None:
        """Open (creating it if it is gone) the file at ``path``; appends go after what it holds."""
        self._trim()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        st = os.fstat(fd)
        self.size = self._capacity = st.st_size
        self.identity = (st.st_dev, st.st_ino)

    def append(self, record: bytes) -> None:
        """Copy ``record`` in after the last one; OSError (the journal unchanged) when it cannot grow."""
        end = self.size + len(record)
        if end > self._capacity or self._map is None:
            self._grow(end)
        assert self._map is not None
        self._map[self.size:end] = record
        self.size = end

    def _grow(self, end: int) -> None:
        capacity = max(_CHUNK, self._capacity)
        while capacity < end:
            capacity *= 2
        os.posix_fallocate(self._fd, 0, capacity)
        self._unmap()
        self._map = mmap.mmap(self._fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._capacity = capacity

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def truncate(self) -> None:
        """Empty the journal. The allocated file and its mapping are kept (growing them again costs a
        millisecond, on the call path of the next row): the used part is zeroed, which reading skips,
        and ``close`` cuts the file to what it holds."""
        if self._map is not None and self.size:
            self._map[:self.size] = bytes(self.size)
        elif self._map is None:
            os.ftruncate(self._fd, 0)
            self._capacity = 0
        self.size = 0

    def still_at_path(self) -> bool:
        """Whether ``path`` is still this file (not deleted, not replaced)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def _trim(self) -> None:
        """Unmap and cut the unused tail off, so the file holds exactly its records."""
        self._unmap()
        if self._fd >= 0 and self._capacity > self.size:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass  # the zeros are skipped when it is read back

    def close(self) -> None:
        if self._fd >= 0:
            self._trim()
            os.close(self._fd)
            self._fd = -1
