"""The gRPC face of a provider: each RPC calls the provider's method, meters it and maps its errors.

With telemetry on, each RPC is a server span continuing the caller's W3C trace context from the gRPC
metadata (the sandbox work inside it is its children), with its status code; and it counts in
``worldrt_provider_requests_total`` and ``worldrt_provider_request_duration_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from worldrt import telemetry
from worldrt.errors import WorldError
from worldrt.providers._metering import Meter
from worldrt.providers._provider import Call, Provider
from worldrt.v1 import pb, rpc

log = logging.getLogger("worldrt.provider")

_UNARY = {
    "Init": "init", "ReceiveLinkConfig": "receive_link_config", "DeleteLink": "delete_link",
    "Capabilities": "capabilities", "Start": "start", "Stop": "stop", "Snapshot": "snapshot",
    "Branch": "branch", "Execute": "execute", "Merge": "merge", "ListInstances": "list_instances",
    "Optimize": "optimize", "Verify": "verify",
    "WriteFiles": "write_files", "ReadFileChunk": "read_file_chunk", "ListFiles": "list_files",
    "StatFile": "stat_file", "MakeDirectory": "make_directory", "MoveFile": "move_file",
    "RemoveFile": "remove_file", "ListImages": "list_images", "InspectImage": "inspect_image", "DeleteImage": "delete_image",
}
_UNARY.update({"StartProcess": "start_process", "WriteProcessStdin": "write_process_stdin",
               "WaitProcess": "wait_process", "SignalProcess": "signal_process", "ListProcesses": "list_processes"})
# Server-streamed rpcs other than ExecuteStream: their events pass through as the provider yields them.
_STREAMED = {"ReadFile": "read_file", "BuildImage": "build_image", "WatchFiles": "watch_files"}
_STREAMED.update({"ReadProcessOutput": "read_process_output"})


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _finish(call: Call, provider: Provider, reply: Any = None) -> tuple[tuple[str, str], ...]:
    """Finish the call's meter once: an ExecutionResult gets its run's wall and cpu time, and the cost
    goes back on one channel, the ``x-worldrt-cost-units`` trailer."""
    wall_ms, cpu_ms, cost = call.meter.finish(provider.prices)
    if isinstance(reply, pb.ExecutionResult):
        reply.duration_ms = reply.duration_ms or wall_ms
        reply.cpu_ms = cpu_ms
    return (("x-worldrt-cost-units", f"{cost:.6f}"),)


_SPAN_ATTRIBUTES: dict[tuple[str, str], dict[str, str | int | float | bool]] = {}


def _span(provider: Provider, rpc_name: str, context: grpc.aio.ServicerContext) -> telemetry.Span:
    """The RPC's server span, child of the caller's (telemetry.NOOP while tracing is off)."""
    if not telemetry.tracing():
        return telemetry.NOOP
    key = (provider.provider_id, rpc_name)
    attributes = _SPAN_ATTRIBUTES.get(key)
    if attributes is None:
        attributes = _SPAN_ATTRIBUTES[key] = {"worldrt.provider": provider.provider_id}
    return telemetry.span(f"worldrt.v1.WorldRuntime/{rpc_name}", attributes, kind="server",
                          parent=context.invocation_metadata())


def _counted(provider: Provider, rpc_name: str, started: float, code: grpc.StatusCode) -> None:
    if telemetry.metrics_on():
        name = code.name
        telemetry.inc("worldrt_provider_requests_total", provider.provider_id, rpc_name, name)
        telemetry.observe("worldrt_provider_request_duration_seconds", time.perf_counter() - started,
                          provider.provider_id, rpc_name, name)


def _code_of(exc: BaseException) -> grpc.StatusCode:
    return exc.code if isinstance(exc, WorldError) else grpc.StatusCode.INTERNAL


class ProviderServicer(rpc.WorldRuntimeServicer):
    def __init__(self, provider: Provider, on_shutdown: Callable[[], None]) -> None:
        self.provider = provider
        self._on_shutdown = on_shutdown
        for rpc_name, method in _UNARY.items():
            setattr(self, rpc_name, self._unary_handler(rpc_name, method))
        for rpc_name, method in _STREAMED.items():
            setattr(self, rpc_name, self._stream_handler(rpc_name, method))

    def _call(self, operation: str, context: grpc.aio.ServicerContext) -> Call:
        md = _metadata(context)
        source = md.get("x-worldrt-source", "")
        return Call(operation, Meter(operation), md.get("x-worldrt-verse-id", ""), source,
                    self.provider.links.of_call(source, md.get("x-worldrt-link-name", "")) if source else None,
                    md.get("x-worldrt-owner", ""))

    async def _fail(self, exc: BaseException, call: Call, context: grpc.aio.ServicerContext) -> None:
        trailers = _finish(call, self.provider)
        if isinstance(exc, WorldError):
            context.set_trailing_metadata(trailers + exc.trailers)
            await context.abort(exc.code, exc.message)
        log.exception("%s failed", call.operation)
        context.set_trailing_metadata(trailers)
        await context.abort(grpc.StatusCode.INTERNAL, f"{self.provider.provider_id} {call.operation} failed: {exc!r}")

    def _unary_handler(self, rpc_name: str, method: str) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = self._call(method, context)
            started = time.perf_counter()
            with _span(self.provider, rpc_name, context) as traced:
                try:
                    reply = await getattr(self.provider, method)(request, call)
                except Exception as exc:
                    traced.failed(exc)
                    _counted(self.provider, rpc_name, started, _code_of(exc))
                    await self._fail(exc, call, context)
                    raise  # unreachable: abort raises
                traced.status(grpc.StatusCode.OK)
            context.set_trailing_metadata(_finish(call, self.provider, reply))
            _counted(self.provider, rpc_name, started, grpc.StatusCode.OK)
            return reply

        handle.__name__ = method
        return handle

    def _stream_handler(self, rpc_name: str, method: str) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = self._call(method, context)
            started = time.perf_counter()
            with _span(self.provider, rpc_name, context) as traced:
                try:
                    async for event in getattr(self.provider, method)(request, call):
                        yield event
                except Exception as exc:  # noqa: BLE001
                    traced.failed(exc)
                    _counted(self.provider, rpc_name, started, _code_of(exc))
                    await self._fail(exc, call, context)
                traced.status(grpc.StatusCode.OK)
            context.set_trailing_metadata(_finish(call, self.provider))
            _counted(self.provider, rpc_name, started, grpc.StatusCode.OK)

        handle.__name__ = method
        return handle

    async def Shutdown(self, request: pb.ShutdownRequest, context: grpc.aio.ServicerContext) -> pb.ShutdownReply:
        log.info("shutdown requested by host %r", request.host_id or "?")
        stopped = await self.provider.close()
        self._on_shutdown()
        return pb.ShutdownReply(instances_stopped=stopped)

    async def ExecuteStream(self, request: pb.ExecuteRequest,
                            context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ExecutionEvent]:
        call = self._call("execute_stream", context)
        trailers: tuple[tuple[str, str], ...] | None = None
        started = time.perf_counter()
        with _span(self.provider, "ExecuteStream", context) as traced:
            try:
                async for event in self.provider.execute_stream(request, call):
                    if event.HasField("result"):
                        trailers = _finish(call, self.provider, event.result)
                    yield event
            except Exception as exc:  # noqa: BLE001
                traced.failed(exc)
                _counted(self.provider, "ExecuteStream", started, _code_of(exc))
                await self._fail(exc, call, context)
            traced.status(grpc.StatusCode.OK)
        context.set_trailing_metadata(trailers or _finish(call, self.provider))
        _counted(self.provider, "ExecuteStream", started, grpc.StatusCode.OK)
