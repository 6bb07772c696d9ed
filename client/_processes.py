"""Handles of long-lived processes in an instance: ``Process`` (blocking) and ``AsyncProcess`` (``await``).

Invariants: every call is a CallProvider (or, for output, CallProviderStream) of the instance's provider
through the client's host, so links, registry rows and a lattice apply to it; a failed call raises its
``worldrt.errors`` kind (an unknown process is NotFound, an offset no longer kept OutOfRange, a full stdin
ResourceExhausted). A handle tracks the offset of its stdin: a ``write`` that failed may simply be called
again, since bytes the provider accepted already are never applied twice. Output is read by offset and
can be read again, from any offset still kept, as often as wanted; ``output`` follows a live process
across the host's stream slices until its output ends.
"""

from __future__ import annotations

import abc
import builtins
import functools
import signal as signals
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal

from worldrt.client import _requests as requests
from worldrt.client._streams import Last, aiterate, iterate
from worldrt.client._types import ProcessChunk, ProcessStatus
from worldrt.v1 import host_pb, pb

if TYPE_CHECKING:
    from worldrt.client._async_instances import AsyncInstance
    from worldrt.client._instances import Instance

StreamChoice = Literal["both", "stdout", "stderr"]
# The longest one wait call waits; a longer wait is several (the host answers within its own slice).
WAIT_SLICE_S = 50.0
_NAMES: dict[int, Literal["stdout", "stderr"]] = {pb.PROCESS_STDOUT: "stdout", pb.PROCESS_STDERR: "stderr"}


def chunk_of(event: host_pb.InvokeEvent) -> ProcessChunk | None:
    """The output a CallProviderStream event carries (None for an end-of-stream marker or another event)."""
    if not event.HasField("process_output"):
        return None
    chunk = event.process_output
    name = _NAMES.get(chunk.stream)
    if name is None or not chunk.data:
        return None
    return ProcessChunk(name, chunk.offset, chunk.data)


def _resume(read: pb.ReadProcessOutputRequest, end: host_pb.ProcessOutputEnd) -> bool:
    """Whether a following read must go on after ``end`` (a host's slice ended, not the output); if so the
    request now starts where that read stopped."""
    if end.ended or read.no_wait:
        return False
    read.stdout_offset, read.stderr_offset = end.stdout_offset, end.stderr_offset
    return True


def _slices(timeout_s: float | None) -> Iterator[int]:
    """The timeout_ms of each wait call for a wait of ``timeout_s`` (None: until the end)."""
    if timeout_s is not None and timeout_s <= 0:
        yield 0
        return
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    first = True
    while True:
        left = WAIT_SLICE_S if deadline is None else deadline - time.monotonic()
        if left <= 0 and not first:
            return
        first = False
        yield max(0, round(min(left, WAIT_SLICE_S) * 1000))


def _data(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


class _ProcessBase(abc.ABC):
    def __init__(self, process_id: str, status: ProcessStatus | None, stdin_offset: int | None) -> None:
        self._id = process_id
        self._status = status
        self._stdin_offset = stdin_offset

    @property
    def id(self) -> str:
        """The process's id in its instance (opaque)."""
        return self._id

    @property
    def last_status(self) -> ProcessStatus | None:
        """What the provider last said of the process to this handle (None before it said anything)."""
        return self._status

    @property
    def stdin_offset(self) -> int | None:
        """Bytes of stdin the provider accepted so far, as this handle knows (None until it knows)."""
        return self._stdin_offset

    def _said(self, reply: host_pb.ProviderCallReply) -> ProcessStatus:
        self._status = ProcessStatus.of(reply.process)
        return self._status

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ProcessBase) and type(other) is type(self) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @abc.abstractmethod
    def _key(self) -> tuple[str, str, str]:
        """(provider, instance id, process id): what makes two handles the same process."""

    def __repr__(self) -> str:
        state = f" {self._status.state}" if self._status is not None else ""
        return f"<{type(self).__name__} {self._id} in {self._key()[1]}{state}>"


class Process(_ProcessBase):
    """A process running (or run) in an instance: read its output by offset, write its stdin, wait for it,
    signal it. ``inst.spawn([...])`` starts one; ``inst.process(id)`` names one that exists."""

    def __init__(self, instance: Instance, process_id: str, status: ProcessStatus | None = None,
                 stdin_offset: int | None = None) -> None:
        super().__init__(process_id, status, stdin_offset)
        self._instance = instance

    @property
    def instance(self) -> Instance:
        """The instance it runs in."""
        return self._instance

    def _key(self) -> tuple[str, str, str]:
        return (self._instance.provider, self._instance.id, self._id)

    def _call(self, field: str, message: Any) -> host_pb.ProviderCallReply:
        return self._instance._client._call(self._instance.provider, field, message)

    def output(self, stream: StreamChoice = "both", offset: int = 0, *, follow: bool = True) -> Iterator[ProcessChunk]:
        """Its output as ``ProcessChunk``s (stream, offset, bytes), from ``offset`` of each stream read, in
        the order written per stream; the iterator ends when the output ends (``follow=False``: once what
        is kept now was given). OutOfRange when ``offset`` is no longer kept (its message names the first
        kept offset)."""
        inst = self._instance
        client = inst._client
        read = requests.read_output(inst.id, self._id, stream, offset, follow)
        while True:
            client._source(inst.provider)
            call = requests.provider_call(inst.provider, "read_process_output", read)
            end: host_pb.ProcessOutputEnd | None = None
            for item in iterate(functools.partial(client._host, client._api.call_provider_stream, call),
                                stop_when_left=True):
                if isinstance(item, Last):
                    end = item.result
                elif (chunk := chunk_of(item)) is not None:
                    yield chunk
            if end is None or not _resume(read, end):
                return

    def stdout(self, offset: int = 0, *, follow: bool = True) -> bytes:
        """Its stdout from ``offset``: to its end (``follow=False``: what is kept now)."""
        return b"".join(c.data for c in self.output("stdout", offset, follow=follow))

    def stderr(self, offset: int = 0, *, follow: bool = True) -> bytes:
        """Its stderr from ``offset``: to its end (``follow=False``: what is kept now)."""
        return b"".join(c.data for c in self.output("stderr", offset, follow=follow))

    def write(self, data: bytes | str, offset: int | None = None, *, eof: bool = False) -> int:
        """Write ``data`` (text as UTF-8) to its stdin at ``offset`` (None: where this handle's last write
        ended); the bytes accepted so far, where the next write goes. Retry-safe: a write that failed may be
        called again as it was. ResourceExhausted when the process has not read enough of what it was given
        (nothing was applied: write again later); FailedPrecondition once stdin is closed."""
        if offset is None:
            if self._stdin_offset is None:  # a handle by id: ask where stdin stands (an empty write applies nothing)
                self._stdin_offset = self._write(0, b"", False).offset
            offset = self._stdin_offset
        return int(self._write(offset, _data(data), eof).offset)

    def _write(self, offset: int, data: bytes, eof: bool) -> pb.WriteProcessStdinReply:
        reply = self._call("write_process_stdin", pb.WriteProcessStdinRequest(
            instance_id=self._instance.id, process_id=self._id, offset=offset, data=data, eof=eof)).stdin
        self._stdin_offset = reply.offset
        return reply

    def close_stdin(self) -> None:
        """Close its stdin (once every byte written reached it): it reads end of file."""
        self.write(b"", eof=True)

    def poll(self) -> ProcessStatus:
        """Its status now, without waiting."""
        return self.wait(0)

    def wait(self, timeout_s: float | None = None) -> ProcessStatus:
        """Wait for it to end, at most ``timeout_s`` seconds (None: however long it takes); its status,
        state "running" if it still runs then."""
        status = self._status
        for timeout_ms in _slices(timeout_s):
            status = self._said(self._call("wait_process", pb.WaitProcessRequest(
                instance_id=self._instance.id, process_id=self._id, timeout_ms=timeout_ms)))
            if not status.running:
                break
        assert status is not None
        return status

    def signal(self, sig: int | str, *, group: bool = True) -> ProcessStatus:
        """Send ``sig`` (a number, a name such as "TERM", or a ``signal.Signals``) to it and, with ``group``,
        to its process group (what it started and did not detach); its status right after."""
        return self._said(self._call("signal_process", pb.SignalProcessRequest(
            instance_id=self._instance.id, process_id=self._id, signal=requests.signal_number(sig),
            leader_only=not group)))

    def kill(self, signal: int | str = signals.SIGKILL) -> ProcessStatus:
        """End it and its process group with ``signal`` (SIGKILL unless given); its status right after."""
        return self.signal(signal)


class AsyncProcess(_ProcessBase):
    """``Process`` with ``await`` (and ``async for`` over its output)."""

    def __init__(self, instance: AsyncInstance, process_id: str, status: ProcessStatus | None = None,
                 stdin_offset: int | None = None) -> None:
        super().__init__(process_id, status, stdin_offset)
        self._instance = instance

    @property
    def instance(self) -> AsyncInstance:
        """The instance it runs in."""
        return self._instance

    def _key(self) -> tuple[str, str, str]:
        return (self._instance.provider, self._instance.id, self._id)

    async def _call(self, field: str, message: Any) -> host_pb.ProviderCallReply:
        return await self._instance._client._call(self._instance.provider, field, message)

    async def output(self, stream: StreamChoice = "both", offset: int = 0, *,
                     follow: bool = True) -> AsyncIterator[ProcessChunk]:
        """Its output as ``ProcessChunk``s, as ``Process.output`` gives it; leaving the loop cancels the read."""
        inst = self._instance
        client = inst._client
        read = requests.read_output(inst.id, self._id, stream, offset, follow)
        while True:
            await client._source(inst.provider)
            call = requests.provider_call(inst.provider, "read_process_output", read)
            end: host_pb.ProcessOutputEnd | None = None
            async for item in aiterate(functools.partial(client._aio.streamed, "call_provider_stream", call)):
                if isinstance(item, Last):
                    end = item.result
                elif (chunk := chunk_of(item)) is not None:
                    yield chunk
            if end is None or not _resume(read, end):
                return

    async def stdout(self, offset: int = 0, *, follow: bool = True) -> bytes:
        """Its stdout from ``offset``: to its end (``follow=False``: what is kept now)."""
        return b"".join([c.data async for c in self.output("stdout", offset, follow=follow)])

    async def stderr(self, offset: int = 0, *, follow: bool = True) -> bytes:
        """Its stderr from ``offset``: to its end (``follow=False``: what is kept now)."""
        return b"".join([c.data async for c in self.output("stderr", offset, follow=follow)])

    async def write(self, data: bytes | str, offset: int | None = None, *, eof: bool = False) -> int:
        """Write ``data`` to its stdin (see ``Process.write``); the bytes accepted so far."""
        if offset is None:
            if self._stdin_offset is None:
                self._stdin_offset = (await self._write(0, b"", False)).offset
            offset = self._stdin_offset
        return int((await self._write(offset, _data(data), eof)).offset)

    async def _write(self, offset: int, data: bytes, eof: bool) -> pb.WriteProcessStdinReply:
        reply = (await self._call("write_process_stdin", pb.WriteProcessStdinRequest(
            instance_id=self._instance.id, process_id=self._id, offset=offset, data=data, eof=eof))).stdin
        self._stdin_offset = reply.offset
        return reply

    async def close_stdin(self) -> None:
        """Close its stdin (once every byte written reached it)."""
        await self.write(b"", eof=True)

    async def poll(self) -> ProcessStatus:
        """Its status now, without waiting."""
        return await self.wait(0)

    async def wait(self, timeout_s: float | None = None) -> ProcessStatus:
        """Wait for it to end, at most ``timeout_s`` seconds (None: however long it takes); its status."""
        status = self._status
        for timeout_ms in _slices(timeout_s):
            status = self._said(await self._call("wait_process", pb.WaitProcessRequest(
                instance_id=self._instance.id, process_id=self._id, timeout_ms=timeout_ms)))
            if not status.running:
                break
        assert status is not None
        return status

    async def signal(self, sig: int | str, *, group: bool = True) -> ProcessStatus:
        """Send ``sig`` to it (and, with ``group``, its process group); its status right after."""
        return self._said(await self._call("signal_process", pb.SignalProcessRequest(
            instance_id=self._instance.id, process_id=self._id, signal=requests.signal_number(sig),
            leader_only=not group)))

    async def kill(self, signal: int | str = signals.SIGKILL) -> ProcessStatus:
        """End it and its process group with ``signal`` (SIGKILL unless given); its status right after."""
        return await self.signal(signal)


def processes_of(reply: host_pb.ProviderCallReply) -> builtins.list[ProcessStatus]:
    """The processes a ListProcesses reply names, oldest first."""
    return [ProcessStatus.of(p) for p in reply.processes.processes]
