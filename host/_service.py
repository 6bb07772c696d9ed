"""``worldrt host serve``: the Host as a gRPC service, with the providers' auth, health and reflection.

Every call but health needs the host's bearer token (the same check providers apply). While the
registry is unhealthy (host/_registry.py), health says NOT_SERVING and every other call is refused
with UNAVAILABLE and the registry's sentence; both recover when its writes work again.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from worldrt.providers._auth import OPEN_PREFIXES, bearer_problem, expected_header
from worldrt.providers._server import ServerTls, bind, listen_address
from worldrt.v1 import HOST_SERVICE_NAME, host_pb, host_rpc, pb

from worldrt.host._host import Host, HostError
from worldrt.host.registry._store import Registry, RegistryError
from worldrt.host.lattice._supervisor import SupervisorError

log = logging.getLogger("worldrt.host")
T = TypeVar("T")


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


class HostServicer(host_rpc.HostServicer):
    def __init__(self, host: Host) -> None:
        self.host = host

    def _do(self, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except HostError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except grpc.RpcError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"provider call failed: {exc.details()}")
        except (SupervisorError, RegistryError) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        raise AssertionError("unreachable")

    def PutLink(self, request: pb.LinkConfig, context: grpc.ServicerContext) -> pb.LinkReply:
        return self._do(context, lambda: self.host.put_link(request))

    def DeleteLink(self, request: pb.LinkConfig, context: grpc.ServicerContext) -> pb.LinkReply:
        return self._do(context, lambda: self.host.delete_link(request))

    def ListLinks(self, request: host_pb.ListLinksRequest, context: grpc.ServicerContext) -> host_pb.ListLinksReply:
        return self.host.list_links()

    def ListProviders(self, request: host_pb.ListProvidersRequest,
                      context: grpc.ServicerContext) -> host_pb.ListProvidersReply:
        return self.host.list_providers()

    def ProviderStatus(self, request: host_pb.ProviderStatusRequest,
                       context: grpc.ServicerContext) -> host_pb.ProviderState:
        return self._do(context, lambda: self.host.provider_status(request.provider_id))

    def LoadComponent(self, request: host_pb.LoadComponentRequest,
                      context: grpc.ServicerContext) -> host_pb.ComponentInfo:
        return self._do(context, lambda: self.host.load_component(request))

    def _stream(self, context: grpc.ServicerContext,
                work: Callable[[Callable[[host_pb.InvokeEvent], None]], host_pb.InvokeEvent]) -> Iterator[Any]:
        """Run ``work`` on its own thread, streaming the events it reports and then its last event."""
        events: queue.SimpleQueue[host_pb.InvokeEvent | BaseException | None] = queue.SimpleQueue()

        def run() -> None:
            try:
                events.put(work(events.put))
            except BaseException as exc:  # noqa: BLE001 - handed to the stream below
                events.put(exc)
            events.put(None)

        threading.Thread(target=run, name="invoke", daemon=True).start()
        while (item := events.get()) is not None:
            if isinstance(item, BaseException):
                code = (grpc.StatusCode.INVALID_ARGUMENT if isinstance(item, HostError) else
                        grpc.StatusCode.UNAVAILABLE if isinstance(item, (RegistryError, SupervisorError)) else
                        grpc.StatusCode.INTERNAL)
                context.abort(code, str(item))
            yield item

    def Invoke(self, request: host_pb.InvokeRequest, context: grpc.ServicerContext) -> Iterator[host_pb.InvokeEvent]:
        return self._stream(context, lambda sink: host_pb.InvokeEvent(outcome=self.host.invoke(request, sink)))

    def RunVerse(self, request: host_pb.VerseRequest, context: grpc.ServicerContext) -> Iterator[host_pb.InvokeEvent]:
        return self._stream(context, lambda sink: host_pb.InvokeEvent(
            result_json=json.dumps(self.host.run_verse(request, sink), default=str)))

    def Analytics(self, request: host_pb.AnalyticsRequest, context: grpc.ServicerContext) -> host_pb.AnalyticsReply:
        return self._do(context, lambda: self.host.analytics(request))

    def RecentInvocations(self, request: host_pb.RecentInvocationsRequest,
                          context: grpc.ServicerContext) -> host_pb.RecentInvocationsReply:
        return self._do(context, lambda: self.host.recent_invocations(request))


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
