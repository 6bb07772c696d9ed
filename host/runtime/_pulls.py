"""Server-streaming RPCs as one bounded import call: a component cannot hold a stream across its calls,
so it pulls. ``generator.read-process-output`` reads ``ReadProcessOutput`` from the offsets asked and
answers the chunks with where the next read starts; ``generator.watch-files`` watches a folder for a
while (``WatchFiles`` with its timeout) and answers the events.

Bounds, each enforced here whatever the component asks: at most ``MAX_BYTES`` of output per call
(``max-bytes`` 0 or larger means that); the wait for output is ``wait-ms`` at most and never past the
invocation's deadline (the stream's gRPC deadline is the smaller of the two). A read first takes what the
provider keeps now (``no_wait``); only when that is nothing does it follow the stream, and it answers at
the first data. Either stream is cancelled as soon as its bound is reached. A watch lasts ``timeout-s``
(1 s at least), ending a second before the invocation does when that comes sooner, and answers at most
``MAX_EVENTS`` changes.

The request and reply of such a pull are not messages of the contract (the contract's request has no
``max_bytes`` or ``wait_ms``, and its reply is a stream), so they are declared here, in package
``worldrt.component``, beside the contract's messages they reuse; the WIT records mirror them field for
field like every other record of the world.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from worldrt.errors import DeadlineExceeded
from worldrt.v1 import pb

MAX_BYTES = 1024 * 1024
MAX_EVENTS = 1000
# The gRPC deadline of a read of what the provider keeps now (it does not wait for output).
NO_WAIT_TIMEOUT_S = 30.0
# How long past its own timeout a watch may take to end before the host stops waiting for it.
_WATCH_GRACE_S = 5.0
_PACKAGE = "worldrt.component"
_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False) -> _F:
    field = _F(name=name, number=number, type=kind,  # type: ignore[arg-type]
               label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        field.type_name = type_name
    return field


def _declare() -> tuple[Any, Any, Any, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="worldrt/component/pulls.proto", package=_PACKAGE, syntax="proto3",
        dependency=[pb.DESCRIPTOR.name])
    file.message_type.add(name="ReadProcessOutputRequest", field=[
        _field("instance_id", 1, _F.TYPE_STRING),
        _field("process_id", 2, _F.TYPE_STRING),
        _field("stream", 3, _F.TYPE_ENUM, ".worldrt.v1.ProcessStream"),
        _field("stdout_offset", 4, _F.TYPE_INT64),
        _field("stderr_offset", 5, _F.TYPE_INT64),
        _field("max_bytes", 6, _F.TYPE_UINT32),
        _field("wait_ms", 7, _F.TYPE_UINT32),
    ])
    file.message_type.add(name="ProcessOutput", field=[
        _field("chunks", 1, _F.TYPE_MESSAGE, ".worldrt.v1.ProcessOutputChunk", repeated=True),
        _field("stdout_offset", 2, _F.TYPE_INT64),
        _field("stderr_offset", 3, _F.TYPE_INT64),
        _field("ended", 4, _F.TYPE_BOOL),
    ])
    file.message_type.add(name="WatchFilesRequest", field=[
        _field("instance_id", 1, _F.TYPE_STRING),
        _field("path", 2, _F.TYPE_STRING),
        _field("recursive", 3, _F.TYPE_BOOL),
        _field("timeout_s", 4, _F.TYPE_UINT32),
        _field("max_events", 5, _F.TYPE_UINT32),
    ])
    file.message_type.add(name="WatchFilesReply", field=[
        _field("events", 1, _F.TYPE_MESSAGE, ".worldrt.v1.FileWatchEvent", repeated=True),
        _field("ended", 2, _F.TYPE_BOOL),
    ])
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        pool.AddSerializedFile(file.SerializeToString())
    return tuple(GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name in (
        "ReadProcessOutputRequest", "ProcessOutput", "WatchFilesRequest", "WatchFilesReply"))  # type: ignore[return-value]


# Built at import, so their fields are not known to mypy: instances are used as Any.
ReadProcessOutputPull, ProcessOutput, WatchFilesPull, WatchFilesOutput = _declare()

# Opens the provider's stream for a request with a gRPC deadline of ``timeout_s``; closing the iterator
# cancels the call. Raises the WorldError kind of a failure, DeadlineExceeded included.
OpenStream = Callable[[Message, float], Iterator[Message]]

_STREAMS = {pb.PROCESS_STREAM_BOTH: (pb.PROCESS_STDOUT, pb.PROCESS_STDERR), pb.PROCESS_STDOUT: (pb.PROCESS_STDOUT,),
            pb.PROCESS_STDERR: (pb.PROCESS_STDERR,)}


class _Output:
    """What one pull has gathered: chunks within the byte budget and each stream's next offset."""

    def __init__(self, request: Any) -> None:
        self.reply = ProcessOutput(stdout_offset=request.stdout_offset, stderr_offset=request.stderr_offset)
        self.budget = min(request.max_bytes or MAX_BYTES, MAX_BYTES)
        self.open = set(_STREAMS.get(request.stream, ()))
        self.data = False

    def full(self) -> bool:
        return self.budget <= 0 or not self.open

    def take(self, chunk: Any) -> None:
        data = bytes(chunk.data[:self.budget])
        self.budget -= len(data)
        attr = "stdout_offset" if chunk.stream == pb.PROCESS_STDOUT else "stderr_offset"
        eof = chunk.eof and len(data) == len(chunk.data)
        self.reply.chunks.add(stream=chunk.stream, offset=chunk.offset, data=data, eof=eof)
        setattr(self.reply, attr, chunk.offset + len(data))
        self.data = self.data or bool(data)
        if eof:
            self.open.discard(chunk.stream)

    def read(self, events: Iterator[Message], *, first_data: bool) -> None:
        """Take chunks until the budget is spent, every stream ended, the stream ends or (``first_data``)
        some data came; the call is cancelled when it stopped early."""
        try:
            for chunk in events:
                self.take(chunk)
                if self.full() or (first_data and self.data):
                    break
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()


def read_process_output(request: Any, open_stream: OpenStream, remaining_s: float) -> Message:
    """The ``ProcessOutput`` for a ``ReadProcessOutputPull``; a DeadlineExceeded of the wait answers what
    came before it (the caller tells the invocation's own deadline from the wait's)."""
    output = _Output(request)
    rpc = pb.ReadProcessOutputRequest(instance_id=request.instance_id, process_id=request.process_id,
                                      stream=request.stream, stdout_offset=request.stdout_offset,
                                      stderr_offset=request.stderr_offset, no_wait=True)
    output.read(open_stream(rpc, NO_WAIT_TIMEOUT_S), first_data=False)
    if not output.data and output.open and request.wait_ms:
        rpc.no_wait = False
        if len(output.open) == 1:  # the other one ended: its eof is in the answer already
            rpc.stream = next(iter(output.open))
        try:
            output.read(open_stream(rpc, request.wait_ms / 1000), first_data=True)
        except DeadlineExceeded:
            pass  # nothing came within the wait: the answer so far (none) stands
    reply: Message = output.reply
    output.reply.ended = not output.open
    return reply


class _Events:
    """What one watch pull has gathered: events, at most ``MAX_EVENTS`` changes past the READY."""

    def __init__(self, request: Any) -> None:
        self.reply = WatchFilesOutput()
        self.budget = min(request.max_events or MAX_EVENTS, MAX_EVENTS)

    def read(self, events: Iterator[Message]) -> None:
        try:
            for event in events:
                self.reply.events.add().CopyFrom(event)
                kind = getattr(event, "kind", 0)
                if kind == pb.FILE_EVENT_ENDED:
                    self.reply.ended = True
                    break
                if kind != pb.FILE_EVENT_READY:
                    self.budget -= 1
                    if self.budget <= 0:
                        break
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()


def watch_files(request: Any, open_stream: OpenStream, remaining_s: float) -> Message:
    """The ``WatchFilesOutput`` for a ``WatchFilesPull``: the provider's watch for ``timeout_s`` (1 s at least,
    and ending a second before the invocation does when it has less), its events up to the bound."""
    seconds = max(1, request.timeout_s or 1)
    if remaining_s < seconds + 1:
        seconds = max(1, math.floor(remaining_s) - 1)
    gathered = _Events(request)
    rpc = pb.WatchFilesRequest(instance_id=request.instance_id, path=request.path, recursive=request.recursive,
                               timeout_s=seconds)
    try:
        gathered.read(open_stream(rpc, seconds + _WATCH_GRACE_S))
    except DeadlineExceeded:
        pass  # the watch outlived its window: the events so far stand
    reply: Message = gathered.reply
    return reply


# The pull of each server-streaming rpc a component imports, by rpc: (request, open_stream, the seconds
# the invocation has left) -> reply.
Pull = Callable[[Any, OpenStream, float], Message]
PULLS: dict[str, Pull] = {"ReadProcessOutput": read_process_output, "WatchFiles": watch_files}
