"""Bearer-token auth for every service a daemon serves, except the health check."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def _deny(message: str) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    return unary, streaming  # type: ignore[return-value]


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        presented = next((v for k, v in details.invocation_metadata or () if k == "authorization"), None)
        if presented is not None and hmac.compare_digest(
            presented.encode() if isinstance(presented, str) else presented, self._expected
        ):
            return handler
        message = ("missing authorization metadata: send 'authorization: Bearer <token>'" if presented is None
                   else "wrong bearer token")
        unary, streaming = _deny(message)
        ser, des = handler.response_serializer, handler.request_deserializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary, des, ser)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming, des, ser)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary, des, ser)
        return grpc.stream_stream_rpc_method_handler(streaming, des, ser)
