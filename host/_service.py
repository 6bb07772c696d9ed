"""``worldrt host serve``: the Host as a gRPC service, with the providers' auth, health and reflection.

Every call but health needs the host's bearer token (the same check providers apply). While the
registry is unhealthy (host/_registry.py), health says NOT_SERVING and every other call is refused
with UNAVAILABLE and the registry's sentence; both recover when its writes work again.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from worldrt.errors import WorldError, from_rpc_error
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


def default_host_address(home: Path) -> str:
    return f"unix:{(home / 'host.sock').resolve()}"


def _refusal(handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that refuses the call with ``code`` and ``message``."""

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    if handler is not None and handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(
        deny, handler.request_deserializer if handler else None, handler.response_serializer if handler else None)


class _TokenCheck(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = expected_header(token)

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(OPEN_PREFIXES):
            return continuation(details)
        problem = bearer_problem(details.invocation_metadata, self._expected)
        if problem is None:
            return continuation(details)
        return _refusal(continuation(details), grpc.StatusCode.UNAUTHENTICATED, problem)


class _RegistryGate(grpc.ServerInterceptor):
    """Refuses every call but health and reflection while the registry is unhealthy."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        problem = self._registry.problem
        if problem is None or details.method.startswith((*OPEN_PREFIXES, "/grpc.reflection.")):
            return continuation(details)
        return _refusal(continuation(details), grpc.StatusCode.UNAVAILABLE, f"the host's registry is unhealthy: {problem}")


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    """End the call with the status of ``exc``: its own for a WorldError or a provider's status, INTERNAL else."""
    if isinstance(exc, WorldError):
        context.abort(exc.code, exc.message)
    if isinstance(exc, grpc.RpcError):
        error = from_rpc_error(exc, "a provider call failed")
        context.abort(error.code, error.message)
    log.error("host call failed", exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"the host failed: {type(exc).__name__}: {exc}")


class HostServicer(host_rpc.HostServicer):
    """Serves every method of the Host API table from ``host``."""

    def __init__(self, host: HostAPI) -> None:
        self.host = host
        for method in METHODS:
            setattr(self, method.rpc, self._streamed(method) if method.finish else self._unary(method))

    def _unary(self, method: Method) -> Callable[[Any, grpc.ServicerContext], Any]:
        call = getattr(self.host, method.name)

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return call(request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status, never a dead host
                _abort(context, exc)

        return handle

    def _streamed(self, method: Method) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        """Run the method on its own thread, streaming the events it reports and then its result."""
        call, finish = getattr(self.host, method.name), method.finish
        assert finish is not None

        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            events: queue.SimpleQueue[Message | BaseException | None] = queue.SimpleQueue()

            def run() -> None:
                try:
                    events.put(finish(call(request, events.put)))
                except BaseException as exc:  # noqa: BLE001 - handed to the stream below
                    events.put(exc)
                events.put(None)

            threading.Thread(target=run, name=method.name, daemon=True).start()
            while (item := events.get()) is not None:
                if isinstance(item, BaseException):
                    _abort(context, item)
                yield item

        return handle


def serve_host(host: Host, listen: str, token: str | None = None, ready: threading.Event | None = None, *,
               tls: ServerTls | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop the providers the host started and flush the registry."""
    address = listen_address(listen, tls=tls, token=token)
    interceptors: list[grpc.ServerInterceptor] = [_TokenCheck(token)] if token else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="host"),
                         interceptors=[*interceptors, _RegistryGate(host.registry)])
    host_rpc.add_HostServicer_to_server(HostServicer(host), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (HOST_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server)
    bind(server, address, tls)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()

    def registry_health(problem: str | None) -> None:
        if stop.is_set():
            return
        status = health_pb2.HealthCheckResponse.SERVING if problem is None else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", HOST_SERVICE_NAME):
            health_servicer.set(name, status)

    host.registry.watch(registry_health)
    log.info("host serving on %s%s", address, "" if tls is None else " with TLS"
             + (" (client certificates required)" if tls.client_ca else ""))
    if ready is not None:
        ready.set()
    try:
        stop.wait()
    finally:
        health_servicer.enter_graceful_shutdown()
        server.stop(grace=2).wait()
        host.close()
        if address.startswith("unix:"):
            Path(address[5:]).unlink(missing_ok=True)
        log.info("host stopped")
