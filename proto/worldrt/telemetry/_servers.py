"""Server spans for whole services: a gRPC interceptor and an ASGI wrapper that make each incoming call
one server span, continuing the caller's W3C ``traceparent`` (gRPC metadata or HTTP header).

``server_interceptors()`` and ``asgi_spans(app)`` are what a server adds while tracing is on: with tracing
off they add nothing (an empty list, the same app), so a server built with them costs nothing more.
The span is current while the call's handler runs, so the host calls it makes (over gRPC, or on threads
that copy the context) are its children: one trace per API request. The app behind ``asgi_spans`` sees this
span's ``traceparent`` in place of the caller's, so spans it makes itself (recent FastAPI versions make one
per route, starting from the request's headers) are children of this one rather than a trace of their own.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
import grpc.aio

from worldrt.telemetry import _traces
from worldrt.telemetry._traces import Span, span

_HTTP_KEYS = (b"traceparent", b"tracestate")


def _code(context: Any) -> grpc.StatusCode:
    code = getattr(context, "code", None)
    found = code() if callable(code) else None
    return found if isinstance(found, grpc.StatusCode) else grpc.StatusCode.OK


def _wrap(name: str, metadata: Any, behaviour: Callable[..., Any], streaming_reply: bool) -> Callable[..., Any] | None:
    """``behaviour`` inside a server span, or None when it is not a coroutine/async generator (left as is)."""
    attributes = {"rpc.system": "grpc", "rpc.method": name}

    def started() -> Span:
        return span(name, attributes, kind="server", parent=metadata)

    def ended(traced: Span, context: Any, error: BaseException | None) -> None:
        code = _code(context)
        if error is not None and code is grpc.StatusCode.OK and not isinstance(error, grpc.aio.AbortError):
            traced.failed(error)
        else:
            traced.status(code, str(getattr(context, "details", lambda: "")() or "") if code is not grpc.StatusCode.OK
                          else "")

    if streaming_reply and inspect.isasyncgenfunction(behaviour):
        async def streamed(request: Any, context: Any) -> AsyncIterator[Any]:
            with started() as traced:
                try:
                    async for item in behaviour(request, context):
                        yield item
                except BaseException as exc:
                    ended(traced, context, exc)
                    raise
                ended(traced, context, None)
        return streamed
    if inspect.iscoroutinefunction(behaviour):
        async def unary(request: Any, context: Any) -> Any:
            with started() as traced:
                try:
                    reply = await behaviour(request, context)
                except BaseException as exc:
                    ended(traced, context, exc)
                    raise
                ended(traced, context, None)
                return reply
        return unary
    return None


class _ServerSpans(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or not _traces.tracing():
            return handler
        name = handler_call_details.method.lstrip("/")
        if name.startswith("grpc."):  # health checks and reflection: not worth a trace each
            return handler
        metadata = handler_call_details.invocation_metadata
        fields = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        for field_name in fields:
            behaviour = getattr(handler, field_name, None)
            if behaviour is not None:
                wrapped = _wrap(name, metadata, behaviour, field_name.endswith("_stream"))
                if wrapped is not None:
                    return handler._replace(**{field_name: wrapped})  # type: ignore[attr-defined, no-any-return]
        return handler


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The interceptor that makes each call a server span, while tracing is on; else none."""
    return [_ServerSpans()] if _traces.tracing() else []


AsgiApp = TypeVar("AsgiApp", bound=Callable[..., Awaitable[None]])


def asgi_spans(app: AsgiApp) -> AsgiApp:
    """``app`` with each HTTP request a server span (``HTTP METHOD``, its path and status code), continuing
    an incoming ``traceparent`` header; ``app`` itself while tracing is off."""
    if not _traces.tracing():
        return app

    async def traced(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                     send: Callable[[Any], Awaitable[None]]) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        parent = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in headers if key in _HTTP_KEYS]
        method = str(scope.get("method", "GET"))
        status = [0]

        async def sending(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status[0] = int(message.get("status", 0))
            await send(message)

        with span(f"HTTP {method}", {"http.request.method": method, "url.path": str(scope.get("path", ""))},
                  kind="server", parent=parent) as current:
            # The app sees this span as the caller: what it traces itself (FastAPI does) nests under it.
            scope = {**scope, "headers": [*((key, value) for key, value in headers if key not in _HTTP_KEYS),
                                          *((key.encode(), value.encode()) for key, value in current.carrier())]}
            await app(scope, receive, sending)
            current.set("http.response.status_code", status[0])
            if status[0] >= 500:
                current.status(grpc.StatusCode.INTERNAL, f"HTTP {status[0]}")

    return cast(AsgiApp, traced)
