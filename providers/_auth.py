"""Bearer tokens: where a daemon's token comes from, and the one check every server applies.

``bearer_problem`` is the check (constant-time, exactly one ``authorization`` header); providers
serve it through ``BearerTokenInterceptor`` (grpc.aio) and the host through its own sync-grpc
interceptor (host/_service.py). Tokens come from the environment (``WORLDRT_TOKEN``) or a file
that only its owner may read, never from the command line, where ``/proc/PID/cmdline`` shows them.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

from worldrt.errors import FailedPrecondition

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
TOKEN_ENV = "WORLDRT_TOKEN"


class TokenError(FailedPrecondition):
    """A token file that cannot be used; the message says what to change."""


def bearer_problem(metadata: Iterable[tuple[str, str | bytes]] | None, expected: bytes) -> str | None:
    """Why the call's metadata does not carry ``expected`` as its one bearer token (None when it does)."""
    presented = [value for key, value in metadata or () if key == "authorization"]
    if not presented:
        return "missing authorization metadata: send 'authorization: Bearer <token>'"
    if len(presented) > 1:
        return (f"{len(presented)} authorization headers: send exactly one 'authorization: Bearer <token>'")
    value = presented[0]
    if not hmac.compare_digest(value.encode() if isinstance(value, str) else value, expected):
        return "wrong bearer token"
    return None


def expected_header(token: str) -> bytes:
    return f"Bearer {token}".encode()


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in ``path``; refused when others may read the file or it is empty."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except OSError as exc:
        raise TokenError(f"cannot read token file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(f"token file {path} is readable by others (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")
    if not token:
        raise TokenError(f"token file {path} is empty: put the token in it")
    return token


def token_from(token_file: str | os.PathLike[str] | None) -> str | None:
    """The token a daemon requires: from ``token_file`` if given, else ``$WORLDRT_TOKEN``, else none."""
    if token_file:
        return read_token_file(token_file)
    return os.environ.get(TOKEN_ENV) or None


def ensure_token_file(path: Path) -> str:
    """The token in ``path``, made (random, mode 0600) when the file does not exist yet."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return read_token_file(path)
    token = secrets.token_urlsafe(32)
    try:
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    return token


def _deny(message: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    return unary, streaming


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = expected_header(token)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        problem = bearer_problem(details.invocation_metadata, self._expected)
        if problem is None:
            return handler
        unary, streaming = _deny(problem)
        ser, des = handler.response_serializer, handler.request_deserializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary, des, ser)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming, des, ser)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary, des, ser)
        return grpc.stream_stream_rpc_method_handler(streaming, des, ser)
