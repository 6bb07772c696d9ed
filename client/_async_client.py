"""``worldrt.AsyncClient``: ``Client`` with ``await``, for asyncio programs.

``await AsyncClient.connect()`` decides which host exactly as ``Client.connect`` (and the CLI) does, on a
thread; a running host is then called over grpc.aio, an embedded one on threads of its own.

Invariants: the same requests, results and errors as ``Client``; calls gathered together run at the same
time (``await asyncio.gather(*(b.exec(code) for b in branches))``), against a running host or an embedded
one; nothing blocks the event loop but the decoding of replies.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from worldrt import telemetry
from worldrt.client import _requests as requests
from worldrt.client._aio import AioRemoteHost, AsyncHost, ThreadedHost
from worldrt.client._async_instances import AsyncInstance, AsyncSnapshot, async_instances_of
from worldrt.client._async_services import AsyncComponents, AsyncImages, AsyncLinks, AsyncProviders, AsyncVerse
from worldrt.client._client import NO_HOST, open_session
from worldrt.client._tracing import client_call
from worldrt.client._types import InstanceInfo, Invocation, Limits, Oracle, SnapshotInfo
from worldrt.errors import Unavailable
from worldrt.host import HostAPI, Session
from worldrt.v1 import host_pb

PathLike = str | Path


def _enter(session: Session, embed: bool) -> HostAPI:
    api = session.__enter__()
    if not embed and not session.remote:
        session.__exit__(None, None, None)
        raise Unavailable(NO_HOST.format(address=session.address))
    return api


class AsyncClient:
    """A worldrt host, from asyncio: the methods of ``Client``, awaited.

    ``async with await AsyncClient.connect() as rt: inst = await rt.start("morph")``."""

    def __init__(self, session: Session, aio: AsyncHost) -> None:
        """Use ``AsyncClient.connect``; this wraps a host already reached."""
        self._session = session
        self._aio = aio
        self._linked: set[str] = set()
        self._lock = asyncio.Lock()
        self._closed = False
        self.images = AsyncImages(self)
        self.links = AsyncLinks(self)
        self.components = AsyncComponents(self)
        self.verse = AsyncVerse(self)
        self.providers = AsyncProviders(self)

    @classmethod
    async def connect(cls, address: str | None = None, *, token: str | None = None,
                      token_file: PathLike | None = None, tls_ca: PathLike | None = None,
                      tls_cert: PathLike | None = None, tls_key: PathLike | None = None, home: PathLike | None = None,
                      db: PathLike | None = None, embed: bool = True) -> AsyncClient:
        """The host ``Client.connect`` would use for the same arguments: the one answering at ``address``
        (default ``$WORLDRT_HOST``, else ``unix:HOME/host.sock``), else one embedded in this process."""
        # Only when the OTEL_* variables ask for it (the SDK is imported then: not on the loop's thread).
        await asyncio.to_thread(telemetry.start_tracing, "worldrt-client", library=True)
        session = await asyncio.to_thread(open_session, address, embed=embed, home=home, db=db, token=token,
                                          token_file=token_file, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        api = await asyncio.to_thread(_enter, session, embed)
        if session.remote:
            api.close()  # the blocking channel the session opened; calls go over grpc.aio instead
            return cls(session, AioRemoteHost(session.address, session.token, session.tls))
        return cls(session, ThreadedHost(api))

    @property
    def remote(self) -> bool:
        """True when a running host answers the calls, False when the host is embedded in this process."""
        return self._aio.remote

    @property
    def address(self) -> str:
        """The host's address (for an embedded host, the address where none answered)."""
        return self._session.address

    @property
    def home(self) -> Path:
        """The state folder: the embedded host's, and where compiled components are cached."""
        return Path(self._session.home or ".")

    # instances -----------------------------------------------------------------------------------
    async def start(self, provider: str = requests.DEFAULT_PROVIDER, *, image: str | None = None,
                    limits: Limits | None = None, ttl_s: int | None = None,
                    metadata: Mapping[str, str] | None = None) -> AsyncInstance:
        """A new instance on ``provider`` (see ``Client.start``); ``async with await rt.start() as inst``."""
        request = requests.start(image=image, limits=limits, ttl_s=ttl_s, metadata=metadata)
        reply = await self._call(provider, "start", request)
        return AsyncInstance(self, InstanceInfo.of(reply.instance, provider))

    def instance(self, instance_id: str, *, provider: str = requests.DEFAULT_PROVIDER) -> AsyncInstance:
        """A handle of an instance that exists already (by its id); nothing is asked of the provider."""
        return AsyncInstance(self, InstanceInfo(instance_id, provider, "", "", True, None, {}, Limits()))

    async def instances(self, provider: str = requests.DEFAULT_PROVIDER) -> builtins.list[AsyncInstance]:
        """The instances ``provider`` holds now, oldest first."""
        reply = await self._aio.unary("list_instances", host_pb.HostListInstancesRequest(provider=provider))
        return async_instances_of(self, reply, provider)

    def snapshot(self, snapshot_id: str, *, provider: str = requests.DEFAULT_PROVIDER) -> AsyncSnapshot:
        """A handle of a snapshot that exists already (by its id); nothing is asked of the provider."""
        return AsyncSnapshot(self, SnapshotInfo(snapshot_id, "", provider, "", 0, "", None))

    async def merge(self, instances: Sequence[AsyncInstance],
                    oracle: Oracle | Mapping[Any, float] | AsyncInstance | str) -> AsyncInstance:
        """Keep one of ``instances`` and stop the others (see ``Client.merge``)."""
        provider, request = requests.merge_of(instances, oracle)
        survivor = InstanceInfo.of((await self._call(provider, "merge", request)).instance, provider)
        kept = None
        for inst in instances:
            if inst.id == survivor.id:
                inst.info, kept = survivor, inst
            else:
                inst._stopped = True
        return kept or AsyncInstance(self, survivor)

    # the registry --------------------------------------------------------------------------------
    async def invocations(self, *, limit: int = 20, verse: int | str | None = None) -> builtins.list[Invocation]:
        """The most recent provider calls the registry recorded (of one verse, when given), newest first."""
        reply = await self._aio.unary("recent_invocations", host_pb.RecentInvocationsRequest(
            limit=limit, verse_id="" if verse is None else str(verse)))
        return [Invocation.of(row) for row in reply.invocations]

    # plumbing ------------------------------------------------------------------------------------
    async def _source(self, provider: str) -> str:
        """The source whose link reaches ``provider``, put first if no link of that source does."""
        if provider not in self._linked:
            async with self._lock:
                if provider not in self._linked:
                    links = (await self._aio.unary("list_links", host_pb.ListLinksRequest())).links
                    link = requests.link_to_put(links, provider)
                    if link is not None:
                        await self._aio.unary("put_link", link)
                    self._linked.add(provider)
        return requests.source_for(provider)

    async def _call(self, provider: str, field: str, message: Any) -> host_pb.ProviderCallReply:
        """One generator operation on ``provider`` through the host's CallProvider (one client span)."""
        with client_call("worldrt.AsyncClient", field):
            await self._source(provider)
            reply: host_pb.ProviderCallReply = await self._aio.unary(
                "call_provider", requests.provider_call(provider, field, message))
            return reply

    async def close(self) -> None:
        """Close the channel, or stop the embedded host and every daemon and instance it started."""
        if not self._closed:
            self._closed = True
            await self._aio.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = f"host at {self.address}" if self.remote else f"embedded host in {self.home}"
        return f"<AsyncClient {where}{' closed' if self._closed else ''}>"
