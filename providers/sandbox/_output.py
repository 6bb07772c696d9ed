"""A process's output as the daemon keeps it: each stream's bytes by offset, its oldest dropped past a cap.

Offsets count every byte the stream ever carried (its total size), so a reader resumes where it left
off. A process's streams share one cap: when together they keep more, whole chunks are dropped from
the front of the stream that keeps more, and a read from before a stream's first kept offset is
OUT_OF_RANGE naming that offset. Readers wait on ``changed()``, which completes at the next append or end.

Above the per-process cap, an ``OutputBudget`` bounds what all processes keep together: an instance's
processes share ``per_instance`` bytes and the whole daemon's ``total``. Past either, output is dropped
the same way (oldest chunks first, so offsets stay true): first that of ended processes (the longest
ended first), then that of the process keeping the most in the instance keeping the most. So the daemon
never keeps more than ``total`` bytes of output (plus one chunk), however many processes write.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

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

    def drop_oldest(self) -> int:
        size = len(self.chunks.popleft())
        self.first += size
        return size

    def read(self, offset: int, limit: int = READ_MAX) -> bytes:
        """Bytes from ``offset`` (at most ``limit``); empty at the end of what is kept, and before an offset a
        running process has not reached yet. Past the end of ended output is OUT_OF_RANGE."""
        if offset < self.first:
            raise err.OutOfRange(f"{self.name} from offset {offset} is no longer kept: the first kept offset is "
                                 f"{self.first} (older output was dropped past the daemon's cap on kept output, per "
                                 f"process, per instance or in all); read from {self.first}")
        if offset > self.total:
            if not self.ended:
                return b""  # not written yet: the reader waits for it
            raise err.OutOfRange(f"{self.name} ended at {self.total} bytes; offset {offset} is past its end")
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
    """stdout and stderr of one process, within ``cap`` bytes together (and its ``budget``'s, if any)."""

    def __init__(self, cap: int, budget: OutputBudget | None = None, owner: str = "") -> None:
        self.cap = cap
        self.stdout = StreamLog("stdout")
        self.stderr = StreamLog("stderr")
        self._changed: asyncio.Future[None] | None = None
        self.budget = budget
        self.owner = owner
        if budget is not None:
            budget.add(self)

    def stream(self, name: str) -> StreamLog:
        return self.stdout if name == "stdout" else self.stderr

    @property
    def kept(self) -> int:
        return self.stdout.kept + self.stderr.kept

    def append(self, name: str, data: bytes) -> None:
        self.stream(name).append(data)
        self._charge(len(data))
        while self.kept > self.cap:
            self.drop_oldest()
        if self.budget is not None:
            self.budget.settle(self)
        self._wake()

    def drop_oldest(self) -> int:
        """Drop the oldest chunk of the stream keeping more; the bytes dropped (0 when nothing is kept)."""
        stream = self.stdout if self.stdout.kept >= self.stderr.kept else self.stderr
        if not stream.chunks:
            return 0
        size = stream.drop_oldest()
        self._charge(-size)
        return size

    def release(self) -> None:
        """Drop everything kept and leave the budget (the process is forgotten)."""
        while self.drop_oldest():
            pass
        if self.budget is not None:
            self.budget.remove(self)
            self.budget = None

    def _charge(self, size: int) -> None:
        if self.budget is not None:
            self.budget.charge(self, size)

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


class _Instance:
    def __init__(self) -> None:
        self.kept = 0
        self.logs: set[OutputLog] = set()
        self.ended: OrderedDict[OutputLog, None] = OrderedDict()


class OutputBudget:
    """The kept output of every process of the daemon: each instance's within ``per_instance`` bytes, all
    within ``total``. One per daemon, used on its event loop."""

    def __init__(self, per_instance: int, total: int) -> None:
        self.per_instance = per_instance
        self.total = total
        self.kept = 0
        self._instances: dict[str, _Instance] = {}
        self._ended: OrderedDict[OutputLog, None] = OrderedDict()  # of every instance, the longest ended first

    def kept_by(self, owner: str) -> int:
        inst = self._instances.get(owner)
        return inst.kept if inst is not None else 0

    def add(self, log: OutputLog) -> None:
        self._instances.setdefault(log.owner, _Instance()).logs.add(log)

    def charge(self, log: OutputLog, size: int) -> None:
        self.kept += size
        self._instances[log.owner].kept += size

    def ended(self, log: OutputLog) -> None:
        """``log``'s process ended: its output is the first to go past a budget."""
        inst = self._instances.get(log.owner)
        if inst is not None and log in inst.logs:
            inst.ended[log] = None
            self._ended[log] = None

    def remove(self, log: OutputLog) -> None:
        """``log`` keeps nothing any more (see OutputLog.release)."""
        inst = self._instances.get(log.owner)
        if inst is not None:
            inst.logs.discard(log)
            inst.ended.pop(log, None)
            if not inst.logs:
                del self._instances[log.owner]
        self._ended.pop(log, None)

    def forget(self, owner: str) -> None:
        """The instance ended: what its processes keep no longer counts (it is freed with them)."""
        inst = self._instances.pop(owner, None)
        if inst is None:
            return
        self.kept -= inst.kept
        for log in inst.logs:
            self._ended.pop(log, None)
            log.budget = None

    def settle(self, log: OutputLog) -> None:
        """After ``log`` grew: drop output until its instance and the daemon are within their budgets."""
        inst = self._instances[log.owner]
        while inst.kept > self.per_instance:
            if not self._victim(inst.ended, inst).drop_oldest():
                break  # nothing left to drop (cannot happen while the counts are true)
        while self.kept > self.total:
            heaviest = max(self._instances.values(), key=lambda i: i.kept)
            if not self._victim(self._ended, heaviest).drop_oldest():
                break

    def _victim(self, ended: OrderedDict[OutputLog, None], fallback: _Instance) -> OutputLog:
        """The longest-ended log of ``ended`` that keeps something, else the log keeping most in ``fallback``."""
        while ended:
            log = next(iter(ended))
            if log.kept:
                return log
            ended.popitem(last=False)
        return max(fallback.logs, key=lambda log: log.kept)
