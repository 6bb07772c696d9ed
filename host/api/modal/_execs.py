"""The task router's exec and stdio calls: ``sb.exec(...)`` (TaskExecStart, TaskExecStdioRead, TaskExecWait,
TaskExecPoll, TaskExecStdinWrite, TaskExecStdinWriteStream, TaskExecStdinStatus) and the entrypoint's own
stdio (SandboxStdioReadV2, SandboxStdinWriteV2), each over the host's process calls (``_processes``).

Output streams are followed on an admitted thread and handed to the event loop at most ``_WINDOW`` chunks
ahead of the reader (the thread waits for it, never the loop); a reader that goes away cancels the host's
stream at its next chunk. The end of an output stream is the end of the RPC, as the SDK expects. Calls of
one sandbox are admitted per kind (short calls, output followers, waits), so a follower never holds up a
stdin write the process it follows is waiting for.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

import grpc
import grpc.aio
from modal_proto import task_command_router_pb2 as tcr

from worldrt.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, WorldError
from worldrt.host.api import Admission
from worldrt.host.api.modal._calls import Context, ModalApi, answer_error, bearer_subject, streaming, unary
from worldrt.host.api.modal._fstools import TOOL_PATH
from worldrt.host.api.modal._processes import ENTRYPOINT, RUNNING, WAIT_SLICE_S, Processes
from worldrt.host.api.modal._records import SandboxRecord
from worldrt.host.api.modal._watch import Watches, watch_command
from worldrt.v1 import host_pb, pb

_WINDOW = 8
_STDOUT = (tcr.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT, tcr.SANDBOX_STDIO_FILE_DESCRIPTOR_STDOUT)
# How long a stdin write waits in all for a process that does not take its input, then RESOURCE_EXHAUSTED.
_STDIN_PATIENCE_S = 30.0
# Stdin states remembered (what TaskExecStdinStatus answers, which the SDK asks right after its writes);
# past it the least recently written are forgotten, and one forgotten answers as a stdin never written.
MAX_STDIN_STATES = 4096
_END = object()


@dataclass
class StdinState:
    written: int = 0
    closed: bool = False


class StdinStates:
    """The stdin state of each exec written to, by (sandbox, exec id): at most ``bound``, the least recently
    written forgotten past it (one forgotten answers as a stdin never written). Made by a write that was
    applied only, so ids a client makes up leave nothing here."""

    def __init__(self, bound: int = MAX_STDIN_STATES) -> None:
        self.bound = bound
        self._states: OrderedDict[tuple[str, str], StdinState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, key: tuple[str, str]) -> StdinState:
        return self._states.get(key, StdinState())

    def set(self, key: tuple[str, str], written: int, closed: bool) -> None:
        state = self._states.setdefault(key, StdinState())
        state.written, state.closed = max(state.written, written), state.closed or closed
        self._states.move_to_end(key)
        while len(self._states) > self.bound:
            self._states.popitem(last=False)


class _Gone(Exception):
    """The reader of a followed stream went away."""


class ExecCalls:
    """Mixed into the router servicer, whose ``api`` and ``processes`` make the calls."""

    api: ModalApi
    processes: Processes

    def __init__(self, api: ModalApi) -> None:
        self._stdin = StdinStates()
        # sb.filesystem.watch() execs, served by watches of the host's, not by a process (``_watch``).
        self.watches = Watches(api.sandboxes, api.admission)

    def _record(self, task_id: str, context: Context, *, ended_ok: bool = False) -> SandboxRecord:
        """The sandbox of ``task_id``; ``ended_ok``: also one that ended but whose output is still kept."""
        if not ended_ok:
            return self.api.sandboxes.live(task_id, bearer_subject(self.api, context))
        subject = bearer_subject(self.api, context)
        if subject is not None and subject != task_id:
            raise InvalidArgument(f"this router token opens task {subject}, not {task_id}")
        record = self.api.records.by_task(task_id)
        if record.stopped:
            raise FailedPrecondition(f"Sandbox {record.id} has finished and its output is no longer kept")
        return record

    # starting and waiting --------------------------------------------------------------------------
    @unary
    async def TaskExecStart(self, request: tcr.TaskExecStartRequest, context: Context) -> tcr.TaskExecStartResponse:
        record = self._record(request.task_id, context)
        if request.HasField("pty_info"):
            raise InvalidArgument("a PTY cannot be given here: worldrt sandboxes have no terminal")
        if not request.command_args:
            raise InvalidArgument("exec needs a command")
        watch = watch_command(list(request.command_args), TOOL_PATH)
        if watch is not None:
            self.watches.start(record, request.exec_id, watch)
            return tcr.TaskExecStartResponse()
        env = self.api.sandboxes.env_of(list(request.secret_sources), list(request.secret_ids))
        env.update(dict(request.env))
        await self.api.host(record.instance_id, self.processes.start, record, request.exec_id,
                            list(request.command_args), env, request.workdir, request.timeout_secs)
        return tcr.TaskExecStartResponse()

    async def _ended(self, record: SandboxRecord, exec_id: str, wait_s: float) -> pb.ProcessInfo:
        return await self.api.host(f"wait:{record.instance_id}", self.processes.wait, record, exec_id, wait_s)

    @unary
    async def TaskExecWait(self, request: tcr.TaskExecWaitRequest, context: Context) -> tcr.TaskExecWaitResponse:
        record = self._record(request.task_id, context, ended_ok=True)
        if (watch := self.watches.get(record, request.exec_id)) is not None:
            while (code := await watch.wait(WAIT_SLICE_S)) is None:
                pass
            return tcr.TaskExecWaitResponse(code=code)
        while True:  # in slices: a client that gives up cancels this between two of them
            info = await self._ended(record, request.exec_id, WAIT_SLICE_S)
            if info.state != RUNNING:
                return _exit(info, tcr.TaskExecWaitResponse())

    @unary
    async def TaskExecPoll(self, request: tcr.TaskExecPollRequest, context: Context) -> tcr.TaskExecPollResponse:
        record = self._record(request.task_id, context, ended_ok=True)
        if (watch := self.watches.get(record, request.exec_id)) is not None:
            return tcr.TaskExecPollResponse() if watch.code is None else tcr.TaskExecPollResponse(code=watch.code)
        info = await self._ended(record, request.exec_id, 0)
        return tcr.TaskExecPollResponse() if info.state == RUNNING else _exit(info, tcr.TaskExecPollResponse())

    # stdin -----------------------------------------------------------------------------------------
    async def _write(self, record: SandboxRecord, process_id: str, offset: int, data: bytes, eof: bool) -> None:
        key = (record.id, process_id)
        if (watch := self.watches.get(record, process_id)) is not None:
            # A watch reads no input: its end ends the watch (the SDK leaves a watch so).
            self._stdin.set(key, offset + len(data), eof)
            if eof:
                watch.close()
                if watch.in_sandbox:  # its helper exits at its stdin's end (else it is killed at its next line)
                    try:
                        await self.api.host(record.instance_id, self.processes.write, record, process_id, 0, b"",
                                            True)
                    except WorldError:
                        pass  # it has ended already, or has not started yet (it then sees the watch closed)
            return
        waited = 0.0
        while True:
            try:
                reply = await self.api.host(record.instance_id, self.processes.write, record, process_id, offset,
                                            data, eof)
                break
            except ResourceExhausted:
                # The process has not taken what it was given yet: wait for it, a bounded while.
                if waited >= _STDIN_PATIENCE_S:
                    raise
                await asyncio.sleep(0.05)
                waited += 0.05
        self._stdin.set(key, reply.offset, reply.closed or eof)

    @unary
    async def TaskExecStdinWrite(self, request: tcr.TaskExecStdinWriteRequest,
                                 context: Context) -> tcr.TaskExecStdinWriteResponse:
        record = self._record(request.task_id, context)
        await self._write(record, request.exec_id, request.offset, request.data, request.eof)
        return tcr.TaskExecStdinWriteResponse()

    async def TaskExecStdinWriteStream(self, requests: AsyncIterator[tcr.TaskExecStdinWriteStreamRequest],
                                       context: Context) -> tcr.TaskExecStdinWriteStreamResponse:
        limits = self.api.admission.limits
        try:
            first = await asyncio.wait_for(anext(requests), limits.body_idle_timeout_s)
            if not first.HasField("start"):
                raise InvalidArgument("a stdin stream begins with its start message")
            start = first.start
            record = self._record(start.task_id, context)
            offset = start.offset
            while True:
                try:
                    message = await asyncio.wait_for(anext(requests), limits.body_idle_timeout_s)
                except StopAsyncIteration:
                    return tcr.TaskExecStdinWriteStreamResponse()  # no end: stdin stays open, resumable
                if message.HasField("end"):
                    await self._write(record, start.exec_id, offset, b"", True)
                    return tcr.TaskExecStdinWriteStreamResponse()
                if message.data:
                    await self._write(record, start.exec_id, offset, message.data, False)
                    offset += len(message.data)
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"the stdin stream sent nothing for {limits.body_idle_timeout_s:g} s")
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - answered as a status, like every handler's errors
            await answer_error(context, exc)
        raise AssertionError("unreachable")

    @unary
    async def TaskExecStdinStatus(self, request: tcr.TaskExecStdinStatusRequest,
                                  context: Context) -> tcr.TaskExecStdinStatusResponse:
        record = self._record(request.task_id, context, ended_ok=True)
        state = self._stdin.get((record.id, request.exec_id))
        return tcr.TaskExecStdinStatusResponse(num_bytes_written=state.written, closed=state.closed)

    @unary
    async def SandboxStdinWriteV2(self, request: tcr.SandboxStdinWriteV2Request,
                                  context: Context) -> tcr.SandboxStdinWriteV2Response:
        record = self._record(request.task_id, context)
        if record.entrypoint is None:
            raise FailedPrecondition("this sandbox was created without an entrypoint: it has no stdin; "
                                     "exec a process and write to its stdin instead")
        await self._write(record, ENTRYPOINT, request.offset, request.data, request.eof)
        return tcr.SandboxStdinWriteV2Response()

    # output ----------------------------------------------------------------------------------------
    async def _follow(self, record: SandboxRecord, process_id: str, stream: pb.ProcessStream,
                      offset: int) -> AsyncIterator[pb.ProcessOutputChunk]:
        """Every chunk of one stream from ``offset`` to its end, across the host's slices."""
        while True:
            end: host_pb.ProcessOutputEnd | None = None
            async for chunk in _followed(self.api.admission, f"out:{record.instance_id}", self.processes, record,
                                         process_id, stream, offset):
                if isinstance(chunk, pb.ProcessOutputChunk):
                    if chunk.data:
                        offset = chunk.offset + len(chunk.data)
                        yield chunk
                elif isinstance(chunk, host_pb.ProcessOutputEnd):
                    end = chunk
            if end is None or end.ended:
                return
            offset = end.stdout_offset if stream == pb.PROCESS_STDOUT else end.stderr_offset

    @streaming
    async def TaskExecStdioRead(self, request: tcr.TaskExecStdioReadRequest,
                                context: Context) -> AsyncIterator[tcr.TaskExecStdioReadResponse]:
        record = self._record(request.task_id, context, ended_ok=True)
        stream = pb.PROCESS_STDOUT if request.file_descriptor in _STDOUT else pb.PROCESS_STDERR
        if (watch := self.watches.get(record, request.exec_id)) is not None:
            read = watch.stdout if stream == pb.PROCESS_STDOUT else watch.stderr
            async for data in read(request.offset):
                yield tcr.TaskExecStdioReadResponse(data=data)
            return
        async for chunk in self._follow(record, request.exec_id, stream, request.offset):
            yield tcr.TaskExecStdioReadResponse(data=chunk.data)

    @streaming
    async def SandboxStdioReadV2(self, request: tcr.SandboxStdioReadV2Request,
                                 context: Context) -> AsyncIterator[tcr.SandboxStdioReadV2Response]:
        record = self._record(request.task_id, context, ended_ok=True)
        if record.entrypoint is None:
            # Without an entrypoint the sandbox's main process writes nothing: its output ends with it.
            while record.result is None:
                await asyncio.sleep(0.5)
            return
        stream = pb.PROCESS_STDOUT if request.file_descriptor in _STDOUT else pb.PROCESS_STDERR
        async for chunk in self._follow(record, ENTRYPOINT, stream, request.offset):
            yield tcr.SandboxStdioReadV2Response(data=chunk.data, starting_offset=chunk.offset)


Exit = TypeVar("Exit", tcr.TaskExecWaitResponse, tcr.TaskExecPollResponse)


def _exit(info: pb.ProcessInfo, answer: Exit) -> Exit:
    if info.state == pb.PROCESS_EXITED:
        answer.code = info.exit_code
    else:
        answer.signal = info.signal or 9
    return answer


async def _followed(admission: Admission, key: str, processes: Processes, record: SandboxRecord, process_id: str,
                    stream: pb.ProcessStream, offset: int) -> AsyncIterator[object]:
    """One host read of a stream: its chunks, then its ProcessOutputEnd (or the error that ended it)."""
    release = await admission.acquire(key)
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[object] = asyncio.Queue()
    room = threading.Semaphore(_WINDOW)
    gone = threading.Event()

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, item)
        except RuntimeError:
            gone.set()  # the loop is closed: the server has stopped

    def on_chunk(chunk: pb.ProcessOutputChunk) -> None:
        while not room.acquire(timeout=1.0):
            if gone.is_set():
                raise _Gone()
        if gone.is_set():
            raise _Gone()
        put(chunk)

    def run() -> None:
        try:
            put(processes.read(record, process_id, stream, offset, on_chunk))
        except _Gone:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            put(exc)
        finally:
            put(_END)
            Admission.release_from_thread(loop, release)

    try:
        threading.Thread(target=run, name=f"modal-read-{process_id}", daemon=True).start()
    except BaseException:
        release()
        raise
    try:
        while True:
            item = await items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, pb.ProcessOutputChunk):
                room.release()
            yield item
    finally:
        gone.set()
