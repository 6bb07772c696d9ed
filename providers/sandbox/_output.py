"""A process's output as the daemon keeps it: each stream's bytes by offset, its oldest dropped past a cap.

Offsets count every byte the stream ever carried (its total size), so a reader resumes where it left
off. A process's streams share one cap: when together they keep more, whole chunks are dropped from
the front of the stream that keeps more, and a read from before a stream's first kept offset is
OUT_OF_RANGE naming that offset. Readers wait on ``changed()``, which completes at the next append or end.
"""

from __future__ import annotations

import asyncio
from collections import deque

from worldrt import errors as err

# The most one read returns: well under gRPC's 4 MiB message limit.
READ_MAX = 256 * 1024
# Small writes (a line at a time) are gathered into chunks of about this size, so a log of small writes
# costs no more memory, and no slower a read, than one of large ones.
GATHER = 64 * 1024


class StreamLog:
    """One stream's kept bytes: chunks in order, the first at offset ``first``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.chunks: deque[bytes | bytearray] = deque()
        self.first = 0
        self.total = 0
        self.ended = False

    @property
    def kept(self) -> int:
        return self.total - self.first

    def append(self, data: bytes) -> None:
        last = self.chunks[-1] if self.chunks else None
        if isinstance(last, bytearray) and len(last) + len(data) <= GATHER:
            last += data
        else:
            self.chunks.append(bytearray(data) if len(data) < GATHER else data)
        self.total += len(data)

    def drop_oldest(self) -> None:
        self.first += len(self.chunks.popleft())

    def read(self, offset: int, limit: int = READ_MAX) -> bytes:
        """Bytes from ``offset`` (at most ``limit``); empty at the end of what is kept."""
        if offset < self.first:
            raise err.OutOfRange(f"{self.name} from offset {offset} is no longer kept: the first kept offset is "
                                 f"{self.first} (older output was dropped past the daemon's cap); read from {self.first}")
        if offset > self.total:
            raise err.OutOfRange(f"{self.name} has {self.total} bytes so far; offset {offset} is past its end")
        # Readers mostly follow the end: find the chunk holding ``offset`` from the newest back.
        index, position = len(self.chunks), self.total
        while index > 0 and position > offset:
            index -= 1
            position -= len(self.chunks[index])
        parts: list[bytes] = []
        got = 0
        while index < len(self.chunks) and got < limit:
            chunk = self.chunks[index]
            start = max(0, offset - position)
            piece = bytes(chunk[start:start + limit - got])
            parts.append(piece)
            got += len(piece)
            position += len(chunk)
            index += 1
        return b"".join(parts)


class OutputLog:
    """stdout and stderr of one process, within ``cap`` bytes together."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.stdout = StreamLog("stdout")
        self.stderr = StreamLog("stderr")
        self._changed: asyncio.Future[None] | None = None

    def stream(self, name: str) -> StreamLog:
        return self.stdout if name == "stdout" else self.stderr

    def append(self, name: str, data: bytes) -> None:
        self.stream(name).append(data)
        while self.stdout.kept + self.stderr.kept > self.cap:
            (self.stdout if self.stdout.kept >= self.stderr.kept else self.stderr).drop_oldest()
        self._wake()

    def end(self, name: str) -> None:
        self.stream(name).ended = True
        self._wake()

    @property
    def ended(self) -> bool:
        return self.stdout.ended and self.stderr.ended

    def changed(self) -> asyncio.Future[None]:
        """A future that completes at the next append or end (shared by every waiting reader)."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
