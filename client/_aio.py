"""The Host API with ``await``: a running host over grpc.aio, or an embedded host whose blocking calls run
in threads of their own.

Both answer ``unary(name, request)`` and ``streamed(name, request, on_event)`` for every method of the
Host API table (``worldrt.host.METHODS``), and raise a failed call as the ``worldrt.errors`` kind of its
status. Invariants: ``on_event`` is always called on the event loop's thread, before the call's result
is returned; calls on the embedded host overlap (each gets a thread of a pool sized for many at once,
not the loop's small default one), so ``asyncio.gather`` over them runs them at the same time.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import grpc
from google.protobuf.message import Message

from worldrt import telemetry
from worldrt.client._tracing import client_call
from worldrt.errors import Aborted, FailedPrecondition, from_rpc_error
from worldrt.host import BY_NAME, HostAPI
from worldrt.providers import ClientTls, open_aio_channel
from worldrt.v1 import host_rpc

Sink = Callable[[Any], None]
# Threads for an embedded host's calls: enough for many branches at once; idle ones cost nothing.
EMBEDDED_THREADS = 64


class AsyncHost(ABC):
    """The Host API, awaited: ``remote`` says whether a running host answers the calls."""

    remote: bool = False
    address: str | None = None
    closed: bool = False

    def _open(self) -> None:
        if self.closed:
            raise FailedPrecondition("the client is closed: connect again")

    @abstractmethod
    async def unary(self, name: str, request: Message) -> Any:
        """The reply of the unary method ``name``."""

    @abstractmethod
    async def streamed(self, name: str, request: Message, on_event: Sink | None = None) -> Any:
        """The result of the streamed method ``name``; each event before it goes to ``on_event``."""

    @abstractmethod
    async def close(self) -> None:
        """Release the channel, or stop the embedded host and what it started."""


class AioRemoteHost(AsyncHost):
    """A running host at ``address``, over one grpc.aio channel that sends ``token`` with every call."""

    remote = True

    def __init__(self, address: str, token: str | None, tls: ClientTls | None) -> None:
        self.address = address
        self._channel = open_aio_channel(address, tls=tls, token=token)
        # The generated stub is untyped: its methods are called by the Host API table's names.
        self._stub: Any = cast("Callable[[grpc.aio.Channel], Any]", host_rpc.HostStub)(self._channel)
        self._md = (("authorization", f"Bearer {token}"),) if token else ()
        self._where = f"host at {address}"

    async def unary(self, name: str, request: Message) -> Any:
        self._open()
        if not telemetry.tracing():
            return await self._unary(name, request, self._md)
        with client_call("worldrt.AsyncClient", name):
            return await self._unary(name, request, (*self._md, *telemetry.carrier()))

    async def _unary(self, name: str, request: Message, metadata: tuple[tuple[str, str], ...]) -> Any:
        try:
            return await getattr(self._stub, BY_NAME[name].rpc)(request, metadata=metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self._where) from None

    async def streamed(self, name: str, request: Message, on_event: Sink | None = None) -> Any:
        self._open()
        if not telemetry.tracing():
            return await self._streamed(name, request, on_event, self._md)
        with client_call("worldrt.AsyncClient", name):
            return await self._streamed(name, request, on_event, (*self._md, *telemetry.carrier()))

    async def _streamed(self, name: str, request: Message, on_event: Sink | None,
                        metadata: tuple[tuple[str, str], ...]) -> Any:
        method = BY_NAME[name]
        assert method.result_of is not None
        call = getattr(self._stub, method.rpc)(request, metadata=metadata)
        try:
            async for event in call:
                result = method.result_of(event)
                if result is not None:
                    return result
                if on_event is not None:
                    on_event(event)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self._where) from None
        finally:
            call.cancel()
        raise Aborted(f"{self._where} ended {name} without a result")

    async def close(self) -> None:
        self.closed = True
        await self._channel.close()


class ThreadedHost(AsyncHost):
    """An embedded host (``api``, a ``worldrt.host.Host``): each call runs on a thread of its own pool."""

    def __init__(self, api: HostAPI) -> None:
        self._api = api
        self._pool = ThreadPoolExecutor(max_workers=EMBEDDED_THREADS, thread_name_prefix="worldrt-client")

    async def _run(self, name: str, call: Callable[[], Any]) -> Any:
        self._open()
        if not telemetry.tracing():
            return await self._in_pool(call)
        with client_call("worldrt.AsyncClient", name):
            # The host's spans for the call are children of this one: the thread runs in this context.
            return await self._in_pool(functools.partial(contextvars.copy_context().run, call))

    async def _in_pool(self, call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def unary(self, name: str, request: Message) -> Any:
        return await self._run(name, functools.partial(getattr(self._api, name), request))

    async def streamed(self, name: str, request: Message, on_event: Sink | None = None) -> Any:
        sink = None
        if on_event is not None:
            loop = asyncio.get_running_loop()

            def sink(event: Any) -> None:  # on the host's thread: hand the event to the loop's
                loop.call_soon_threadsafe(on_event, event)

        return await self._run(name, functools.partial(getattr(self._api, name), request, sink))

    async def close(self) -> None:
        self.closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._api.close)
        finally:
            self._pool.shutdown(wait=False)
