"""Server-streaming RPCs as one bounded import call: a component cannot hold a stream across its calls,
so it pulls. ``generator.read-process-output`` reads ``ReadProcessOutput`` from the offsets asked and
answers the chunks with where the next read starts.

Bounds, each enforced here whatever the component asks: at most ``MAX_BYTES`` of output per call
(``max-bytes`` 0 or larger means that); the wait for output is ``wait-ms`` at most and never past the
invocation's deadline (the stream's gRPC deadline is the smaller of the two). A read first takes what the
provider keeps now (``no_wait``); only when that is nothing does it follow the stream, and it answers at
the first data. Either stream is cancelled as soon as its bound is reached.

The request and reply of such a pull are not messages of the contract (the contract's request has no
``max_bytes`` or ``wait_ms``, and its reply is a stream), so they are declared here, in package
``worldrt.component``, beside the contract's messages they reuse; the WIT records mirror them field for
field like every other record of the world.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from worldrt.errors import DeadlineExceeded
from worldrt.v1 import pb

MAX_BYTES = 1024 * 1024
_PACKAGE = "worldrt.component"
_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False) -> _F:
    field = _F(name=name, number=number, type=kind,  # type: ignore[arg-type]
               label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        field.type_name = type_name
    return field


def _declare() -> tuple[Any, Any]:
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
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        pool.AddSerializedFile(file.SerializeToString())
    return (GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ReadProcessOutputRequest")),
            GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ProcessOutput")))


# Built at import, so their fields are not known to mypy: instances are used as Any.
ReadProcessOutputPull, ProcessOutput = _declare()

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


def read_process_output(request: Any, open_stream: OpenStream, default_timeout_s: float) -> Message:
    """The ``ProcessOutput`` for a ``ReadProcessOutputPull``; a DeadlineExceeded of the wait answers what
    came before it (the caller tells the invocation's own deadline from the wait's)."""
    output = _Output(request)
    rpc = pb.ReadProcessOutputRequest(instance_id=request.instance_id, process_id=request.process_id,
                                      stream=request.stream, stdout_offset=request.stdout_offset,
                                      stderr_offset=request.stderr_offset, no_wait=True)
    output.read(open_stream(rpc, default_timeout_s), first_data=False)
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


# The pull of each server-streaming rpc a component imports, by rpc.
Pull = Callable[[Any, OpenStream, float], Message]
PULLS: dict[str, Pull] = {"ReadProcessOutput": read_process_output}
