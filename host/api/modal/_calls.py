"""What both services share: the server's parts (``ModalApi``), the host calls admitted per sandbox, and
how an error reaches the SDK (a gRPC status with the error's sentence, which the SDK raises as its own
exception: NOT_FOUND as ``NotFoundError``, UNIMPLEMENTED as ``InvalidError`` …)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio

from worldrt.errors import WorldError
from worldrt.host.api import Admission
from worldrt.host.api.modal._auth import Tokens
from worldrt.host.api.modal._blobs import BlobStore
from worldrt.host.api.modal._images import Images
from worldrt.host.api.modal._records import Records
from worldrt.host.api.modal._refusals import why_not
from worldrt.host.api.modal._sandboxes import Sandboxes

log = logging.getLogger("worldrt.api.modal")

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class ModalApi:
    images: Images
    records: Records
    sandboxes: Sandboxes
    tokens: Tokens
    admission: Admission
    # The URL the SDK reaches this server's task command router at (this server itself).
    router_url: str
    # Blobs (payloads of 4 MiB or more) and their HTTP/1.1 listener (uvicorn, as a task of this loop).
    blobs: BlobStore

    async def host(self, key: str | None, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` (a call that waits on the host) on a thread once admitted for ``key`` (a sandbox's
        instance: a flood of calls on one sandbox slows only that sandbox)."""
        return await self.admission.run(key, fn, *args)


async def answer_error(context: Context, exc: BaseException) -> None:
    """End the call with ``exc`` as a status: a WorldError's code and sentence, anything else INTERNAL."""
    if isinstance(exc, WorldError):
        await context.abort(exc.code, exc.message)
    log.exception("a Modal API call failed", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"worldrt's Modal API failed: {exc!r}")


def unary(fn: Callable[[Any, Any, Context], Awaitable[T]]) -> Callable[[Any, Any, Context], Awaitable[T]]:
    """A handler whose errors are answered as gRPC statuses."""

    @functools.wraps(fn)
    async def handler(self: Any, request: Any, context: Context) -> T:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await answer_error(context, exc)
            raise AssertionError("abort returned") from None

    return handler


def streaming(fn: Callable[[Any, Any, Context], AsyncIterator[T]]) -> Callable[[Any, Any, Context], AsyncIterator[T]]:
    """A server-streaming handler whose errors end the stream with a gRPC status."""

    @functools.wraps(fn)
    async def handler(self: Any, request: Any, context: Context) -> AsyncIterator[T]:
        try:
            async for item in fn(self, request, context):
                yield item
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await answer_error(context, exc)

    return handler


def refusal(message: str, code: grpc.StatusCode = grpc.StatusCode.UNIMPLEMENTED) -> Callable[..., Awaitable[None]]:
    """A handler of any kind that answers ``code`` and ``message`` without reading its request."""

    async def refuse(_request: object, context: Context) -> None:
        await context.abort(code, message)

    return refuse


def refuse_the_rest(servicer: object, base: type) -> None:
    """Give ``servicer`` a refusal (UNIMPLEMENTED and the reason) for every RPC of ``base`` it does not serve."""
    served: set[str] = set()
    for klass in type(servicer).__mro__:
        if klass is base:
            break
        served.update(name for name in vars(klass) if not name.startswith("_"))
    for name in dir(base):
        if not name.startswith("_") and name not in served:
            setattr(servicer, name, refusal(why_not(name)))


def client_version(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-modal-client-version":
            return value if isinstance(value, str) else value.decode("ascii", "replace")
    return ""


def bearer_subject(api: ModalApi, context: Context) -> str | None:
    return api.tokens.router_subject(context.invocation_metadata())
