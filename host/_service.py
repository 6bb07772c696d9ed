"""``worldrt host serve``: the Host as a gRPC service, with the providers' auth, health and reflection.

Every call but health needs the host's bearer token (the same check providers apply). While the
registry is unhealthy (host/registry), health says NOT_SERVING and every other call is refused
with UNAVAILABLE and the registry's sentence; both recover when its writes work again.

The server is grpc.aio. Its event loop answers health, reflection, auth and every refusal itself and
never runs a Host method: those block (DuckDB, wasmtime, provider calls), so each runs on a thread of
a pool of its own, admitted by ``Admission`` (host/_admission.py) within the host's limits and refused
with RESOURCE_EXHAUSTED past them. However many long calls run, or spin, health answers at once, other
callers are refused in a sentence rather than queued, and a slow instance slows only its own callers.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from worldrt import loops, telemetry
from worldrt.errors import Cancelled, WorldError, from_rpc_error
from worldrt.host._admission import Admission, ServiceLimits, Ticket
from worldrt.host._api import METHODS, HostAPI, Method
from worldrt.host._host import Host
from worldrt.host.registry import Registry
from worldrt.providers import (
    OPEN_PREFIXES,
    ServerTls,
    bearer_problem,
    bind,
    expected_header,
    listen_address,
)
from worldrt.v1 import HOST_SERVICE_NAME, host_rpc

log = logging.getLogger("worldrt.host")
STOP_GRACE_S = 2.0
# How often work waiting for its event to be sent looks whether the caller is still there.
_SENT_POLL_S = 0.5


def _refusal(handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that refuses the call with ``code`` and ``message``."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if handler is not None and handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny_stream, handler.request_deserializer,
                                                    handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(
        deny, handler.request_deserializer if handler else None, handler.response_serializer if handler else None)


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class _TokenCheck(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = expected_header(token)

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if details.method.startswith(OPEN_PREFIXES):
            return handler
        problem = bearer_problem(details.invocation_metadata, self._expected)
        if problem is None:
            return handler
        return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, problem)


class _RegistryGate(grpc.aio.ServerInterceptor):
    """Refuses every call but health and reflection while the registry is unhealthy."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        problem = self._registry.problem
        if problem is None or details.method.startswith((*OPEN_PREFIXES, "/grpc.reflection.")):
            return handler
        return _refusal(handler, grpc.StatusCode.UNAVAILABLE, f"the host's registry is unhealthy: {problem}")


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    """End the call with the status of ``exc``: its own for a WorldError or a provider's status, INTERNAL else."""
    if isinstance(exc, WorldError):
        context.set_trailing_metadata(exc.trailers)  # its reason, so the caller can act on more than the kind
        await context.abort(exc.code, exc.message)
    if isinstance(exc, grpc.RpcError):
        error = from_rpc_error(exc, "a provider call failed")
        context.set_trailing_metadata(error.trailers)
        await context.abort(error.code, error.message)
    log.error("host call failed", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"the host failed: {type(exc).__name__}: {exc}")


class HostServicer(host_rpc.HostServicer):
    """Serves every method of the Host API table from ``host``, each call on ``pool`` once admitted."""

    def __init__(self, host: HostAPI, admission: Admission, pool: ThreadPoolExecutor) -> None:
        self.host = host
        self.admission = admission
        self.pool = pool
        for method in METHODS:
            setattr(self, method.rpc, self._streamed(method) if method.finish else self._unary(method))

    async def _admit(self, method: Method, request: Message, context: grpc.aio.ServicerContext) -> Ticket:
        try:
            return self.admission.admit(method.name, request)
        except WorldError as exc:  # not logged: a caller could fill the log with refusals
            await _abort(context, exc)

    def _unary(self, method: Method) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        call = getattr(self.host, method.name)

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            ticket = await self._admit(method, request, context)

            def run() -> Any:
                try:
                    return call(request)
                finally:
                    ticket.release()

            try:
                return await asyncio.wrap_future(self.pool.submit(contextvars.copy_context().run, run))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status, never a dead host
                await _abort(context, exc)

        return handle

    def _streamed(self, method: Method) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        """Run the method on the pool, streaming the events it reports and then its result."""
        call, finish = getattr(self.host, method.name), method.finish
        assert finish is not None

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            ticket = await self._admit(method, request, context)
            follows = ticket.kind == "follows"
            loop = asyncio.get_running_loop()
            events: asyncio.Queue[tuple[Message, Future[None]] | Message | BaseException | None] = asyncio.Queue()

            def put(item: tuple[Message, Future[None]] | Message | BaseException | None) -> bool:
                try:
                    loop.call_soon_threadsafe(events.put_nowait, item)
                except RuntimeError:
                    return False  # the server's loop is gone (the host is stopping): nobody reads this stream
                return True

            gone = threading.Event()

            def report(event: Message) -> None:
                # A reader that went away ends a stream that follows a process at its next event, rather
                # than at the process's end: its thread and its place are given back.
                if gone.is_set() and follows:
                    raise Cancelled("the caller stopped reading")
                # The work goes on once its event is on its way to the caller: a caller that reads slowly holds
                # it back (no event piles up in the host), and a host killed mid-stream has done at most one
                # step (a provider call and its row) that its caller did not hear of.
                sent: Future[None] = Future()
                if not put((event, sent)):
                    return
                while not gone.is_set():
                    try:
                        sent.result(timeout=_SENT_POLL_S)
                        return
                    except TimeoutError:
                        continue

            def run() -> None:
                try:
                    put(finish(call(request, report)))
                except BaseException as exc:  # noqa: BLE001 - handed to the stream below
                    put(exc)
                finally:
                    ticket.release()
                    put(None)

            try:
                self.pool.submit(contextvars.copy_context().run, run)  # the call's span stays current
            except BaseException:
                ticket.release()
                raise
            waiting: list[Future[None]] = []
            try:
                while (item := await events.get()) is not None:
                    if isinstance(item, BaseException):
                        await _abort(context, item)
                    if isinstance(item, tuple):
                        event, sent = item
                        waiting.append(sent)
                        yield event
                        waiting.pop().set_result(None)
                    else:
                        yield item
            finally:
                gone.set()
                while not events.empty():
                    left = events.get_nowait()
                    if isinstance(left, tuple):
                        waiting.append(left[1])
                for sent in waiting:  # the work waiting on an event the caller will never read goes on
                    sent.set_result(None)

        return handle


async def _serve(host: Host, address: str, token: str | None, ready: threading.Event | None,
                 tls: ServerTls | None, limits: ServiceLimits) -> None:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="host")
    interceptors: list[grpc.aio.ServerInterceptor] = [_TokenCheck(token)] if token else []
    # While tracing is on each call is a server span continuing the caller's traceparent (worldrt.telemetry).
    server = grpc.aio.server(interceptors=[*interceptors, *telemetry.server_interceptors(), _RegistryGate(host.registry)])
    host_rpc.add_HostServicer_to_server(HostServicer(host, Admission(address, limits), pool), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (HOST_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server)
    bind(server, address, tls)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()

    async def set_health(problem: str | None) -> None:
        if stop.is_set():
            return
        status = (health_pb2.HealthCheckResponse.SERVING if problem is None
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", HOST_SERVICE_NAME):
            await health_servicer.set(name, status)

    def registry_health(problem: str | None) -> None:  # called on the registry's threads, and once here
        try:
            asyncio.run_coroutine_threadsafe(set_health(problem), loop)
        except RuntimeError:
            pass  # the loop has ended: the host is stopping

    host.registry.watch(registry_health)
    log.info("host serving on %s%s (%d component invocations, %d other calls, %d quick ones and %d per instance "
             "at once) and %d calls following processes or files (%d per instance)", address,
             "" if tls is None else " with TLS" + (" (client certificates required)" if tls.client_ca else ""),
             limits.components, limits.calls, limits.quick, limits.per_instance, limits.follows,
             limits.follows_per_instance)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace=STOP_GRACE_S)
        pool.shutdown(wait=False, cancel_futures=True)


def serve_host(host: Host, listen: str, token: str | None = None, ready: threading.Event | None = None, *,
               tls: ServerTls | None = None, limits: ServiceLimits | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop the providers the host started and flush the registry."""
    address = listen_address(listen, tls=tls, token=token)
    try:
        loops.run(_serve(host, address, token, ready, tls, limits or ServiceLimits(host.max_components)))
    finally:
        host.close()
        if address.startswith("unix:"):
            Path(address[5:]).unlink(missing_ok=True)
        log.info("host stopped")
