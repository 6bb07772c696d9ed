"""envd's Process service (``process.Process``, served by the ``ProcessASGIApplication`` of the ``e2b``
wheel) on worldrt processes: Start and Connect stream a process's output and its end, List, SendInput,
StreamInput, CloseStdin and SendSignal act on it by pid.

A process outlives the request that started it (``commands.run(background=True)``): it is a worldrt
process, kept by the provider until it ends or its sandbox does. Its output is followed by short reads
(``no_wait``) between bounded waits for its end, each on an admitted thread, so a stream that lasts hours
holds no thread while it waits and sends a keepalive event at least every ``KEEPALIVE_S``. PTYs are not
served (Start with a pty and Update answer UNIMPLEMENTED with a sentence). As in envd, a Start's
``Connect-Timeout-Ms`` is the process's own deadline: the provider kills it (and its group) then, whether or not
anyone still follows its stream.
"""

from __future__ import annotations

import asyncio
import signal as signals
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from e2b.envd.process import process_pb as epb
from e2b.envd.process.process_connect import Process
from protobuf import Oneof

from worldrt.errors import NotFound
from worldrt.host.api.e2b._envd import KEEPALIVE_S, Envd
from worldrt.host.api.e2b._paths import HOME
from worldrt.v1 import pb

_MAX_DEADLINE_MS = 2**32 - 1  # StartProcessRequest.timeout_ms is a uint32
_WAIT_MS = 250  # one bounded wait for the process's end between two reads of its output
_NO_PTY = ("PTYs are not supported by worldrt's E2B-compatible API (its processes have pipes, not terminals): "
           "use commands.run, with background=True and send_stdin for interactive programs")


def _started(pid: int) -> epb.ProcessEvent:
    return epb.ProcessEvent(event=Oneof[Literal["start"], epb.ProcessEvent.StartEvent](
        "start", epb.ProcessEvent.StartEvent(pid=pid)))


def _data(stream: int, data: bytes) -> epb.ProcessEvent:
    output = (Oneof[Literal["stdout"], bytes]("stdout", data) if stream == pb.PROCESS_STDOUT
              else Oneof[Literal["stderr"], bytes]("stderr", data))
    return epb.ProcessEvent(event=Oneof[Literal["data"], epb.ProcessEvent.DataEvent](
        "data", epb.ProcessEvent.DataEvent(output=output)))


def _keepalive() -> epb.ProcessEvent:
    return epb.ProcessEvent(event=Oneof[Literal["keepalive"], epb.ProcessEvent.KeepAlive](
        "keepalive", epb.ProcessEvent.KeepAlive()))


def _ended(end: epb.ProcessEvent.EndEvent) -> epb.ProcessEvent:
    return epb.ProcessEvent(event=Oneof[Literal["end"], epb.ProcessEvent.EndEvent]("end", end))


def _selected_pid(selector: epb.ProcessSelector | None) -> int:
    match selector.selector if selector is not None else None:
        case Oneof(field="pid", value=pid):
            return int(pid)
        case Oneof(field="tag", value=tag):
            raise ConnectError(Code.UNIMPLEMENTED, f"selecting a process by tag ({tag!r}) is not supported here; "
                                                   f"select it by pid")
    raise ConnectError(Code.INVALID_ARGUMENT, "the request selects no process: give its pid")


def _end(info: pb.ProcessInfo) -> epb.ProcessEvent:
    if info.state == pb.PROCESS_EXITED:
        return _ended(epb.ProcessEvent.EndEvent(exit_code=info.exit_code, exited=True,
                                                status=f"exit status {info.exit_code}"))
    name = signals.Signals(info.signal).name if info.signal in signals.Signals._value2member_map_ else str(info.signal)
    why = info.reason or ("timed out" if info.state == pb.PROCESS_TIMED_OUT else f"killed by {name}")
    return _ended(epb.ProcessEvent.EndEvent(exit_code=-1, exited=False, status=f"signal: {name}", error=why))


class ProcessService(Process):
    def __init__(self, envd: Envd) -> None:
        self.envd = envd
        self.api = envd.api

    async def _follow(self, sandbox_id: str, process_id: str) -> AsyncIterator[epb.ProcessEvent]:
        """The process's output from its start, then its end."""
        offsets = (0, 0)
        last_sent = time.monotonic()
        while True:
            try:
                chunks, end = await self.envd.run(sandbox_id, self.api.read_output, sandbox_id, process_id, offsets)
                info = None if end.ended else await self.envd.run(
                    sandbox_id, self.api.wait_process, sandbox_id, process_id, _WAIT_MS)
            except ConnectError as exc:
                if exc.code not in (Code.RESOURCE_EXHAUSTED, Code.UNAVAILABLE):
                    raise
                await asyncio.sleep(0.2)  # this sandbox's turns are all taken: its own stream waits, no one else's
                continue
            for chunk in chunks:
                if chunk.data:
                    yield _data(chunk.stream, chunk.data)
                    last_sent = time.monotonic()
            offsets = (end.stdout_offset, end.stderr_offset)
            if end.ended:
                break
            if info is not None and info.state != pb.PROCESS_RUNNING:
                await asyncio.sleep(0.05)  # it ended, but something it left running still holds its output open
            if time.monotonic() - last_sent > KEEPALIVE_S:
                yield _keepalive()
                last_sent = time.monotonic()
        while True:
            info = await self.envd.run(sandbox_id, self.api.wait_process, sandbox_id, process_id, 10_000)
            if info.state != pb.PROCESS_RUNNING:
                yield _end(info)
                return
            yield _keepalive()

    async def start(self, request: epb.StartRequest, ctx: RequestContext[Any, Any]) -> AsyncIterator[epb.StartResponse]:
        sandbox_id = self.envd.sandbox_id(ctx)
        if request.pty is not None:
            raise ConnectError(Code.UNIMPLEMENTED, _NO_PTY)
        config = request.process
        if config is None or not config.cmd:
            raise ConnectError(Code.INVALID_ARGUMENT, "the request names no command (process.cmd)")
        cwd = config.cwd if config.has_field("cwd") else HOME
        stdin = request.stdin if request.has_field("stdin") else True
        tag = request.tag if request.has_field("tag") else ""
        info = await self.envd.run(sandbox_id, self.api.start_process, sandbox_id, config.cmd, list(config.args),
                                   dict(config.envs), cwd, stdin, tag, _deadline_ms(ctx))
        yield epb.StartResponse(event=_started(info.pid))
        async for event in self._follow(sandbox_id, info.process_id):
            yield epb.StartResponse(event=event)

    async def connect(self, request: epb.ConnectRequest, ctx: RequestContext[Any, Any]
                      ) -> AsyncIterator[epb.ConnectResponse]:
        sandbox_id = self.envd.sandbox_id(ctx)
        pid = _selected_pid(request.process)
        process_id = await self.envd.run(sandbox_id, self._process_id, sandbox_id, pid)
        yield epb.ConnectResponse(event=_started(pid))
        async for event in self._follow(sandbox_id, process_id):
            yield epb.ConnectResponse(event=event)

    def _process_id(self, sandbox_id: str, pid: int) -> str:
        sandbox = self.api.running(sandbox_id)
        try:
            return self.api.process_id(sandbox, pid)
        except NotFound:
            self.api.list_processes(sandbox_id)  # one started before this server knew of it (a resume)
            return self.api.process_id(sandbox, pid)

    async def list(self, request: epb.ListRequest, ctx: RequestContext[Any, Any]) -> epb.ListResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        running = await self.envd.run(sandbox_id, self.api.list_processes, sandbox_id)
        return epb.ListResponse(processes=[
            epb.ProcessInfo(config=epb.ProcessConfig(cmd=p.argv[0] if p.argv else "", args=list(p.argv[1:]),
                                                     envs={}, cwd=p.cwd), pid=p.pid, tag=p.tag or None)
            for p in running])

    async def send_input(self, request: epb.SendInputRequest, ctx: RequestContext[Any, Any]) -> epb.SendInputResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        pid = _selected_pid(request.process)
        await self.envd.run(sandbox_id, self.api.write_stdin, sandbox_id, pid, _stdin_of(request.input), False)
        return epb.SendInputResponse()

    async def stream_input(self, request: AsyncIterator[epb.StreamInputRequest], ctx: RequestContext[Any, Any]
                           ) -> epb.StreamInputResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        pid: int | None = None
        async for message in request:
            value = message.event.value if message.event is not None else None
            if isinstance(value, epb.StreamInputRequest.StartEvent):
                pid = _selected_pid(value.process)
            elif isinstance(value, epb.StreamInputRequest.DataEvent):
                if pid is None:
                    raise ConnectError(Code.INVALID_ARGUMENT, "stdin data came before the start event")
                await self.envd.run(sandbox_id, self.api.write_stdin, sandbox_id, pid, _stdin_of(value.input), False)
        return epb.StreamInputResponse()

    async def close_stdin(self, request: epb.CloseStdinRequest, ctx: RequestContext[Any, Any]
                          ) -> epb.CloseStdinResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        pid = _selected_pid(request.process)
        await self.envd.run(sandbox_id, self.api.write_stdin, sandbox_id, pid, b"", True)
        return epb.CloseStdinResponse()

    async def send_signal(self, request: epb.SendSignalRequest, ctx: RequestContext[Any, Any]
                          ) -> epb.SendSignalResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        pid = _selected_pid(request.process)
        number = int(signals.SIGTERM) if request.signal == epb.Signal.SIGTERM else int(signals.SIGKILL)
        await self.envd.run(sandbox_id, self.api.signal, sandbox_id, pid, number)
        return epb.SendSignalResponse()

    async def update(self, request: epb.UpdateRequest, ctx: RequestContext[Any, Any]) -> epb.UpdateResponse:
        raise ConnectError(Code.UNIMPLEMENTED, _NO_PTY)


def _deadline_ms(ctx: RequestContext[Any, Any]) -> int:
    """The process's own deadline, as envd sets it: the Start call's ``Connect-Timeout-Ms`` (the SDK's
    ``commands.run(timeout=...)``, 60 s unless given), counted from its start; 0, absent or negative: none
    (the SDK sends no header for ``timeout=0``). It outlives the stream: a process started in the background
    is killed at it too."""
    given = ctx.request_headers.get("connect-timeout-ms", "")
    try:
        value = int(given)  # the Connect protocol layer has refused a header that is not a number
    except ValueError:
        return 0
    return min(value, _MAX_DEADLINE_MS) if value > 0 else 0


def _stdin_of(given: epb.ProcessInput | None) -> bytes:
    match given.input if given is not None else None:
        case Oneof(field="stdin", value=data):
            return bytes(data)
        case Oneof(field="pty", value=_):
            raise ConnectError(Code.UNIMPLEMENTED, _NO_PTY)
    return b""

