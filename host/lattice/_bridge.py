"""The bridge: a host's healthy local provider daemons, served onto the lattice.

For each provider it serves, the bridge joins the queue group ``worldrt.rpc.{L}.{provider}`` (any
replica) and subscribes to its own replica's subject, but only while the supervisor reports the
daemon healthy: an unhealthy or hung daemon leaves both within one health check and a tend. Each call is
forwarded as its protobuf bytes to the daemon's unix socket over gRPC, with the metadata the caller sent
(verse id, source, link name), this host's provider token and the caller's remaining deadline; the answer
goes back with the gRPC status code and message unchanged, the replica and the cost. Ids in requests lose
this replica's ``@REPLICA`` stamp, ids in replies get it (host/lattice/_wire.py).

Only the world's operations, files and images are carried (``LATTICE_RPCS``): Init, Shutdown,
ReceiveLinkConfig and DeleteLink get PERMISSION_DENIED and a sentence, and never reach the daemon (nor its
token). BuildImage and DeleteImage go with ``x-worldrt-owner: lattice``: the names they bind or remove are
the lattice's, never the host's own. A call's deadline is bounded by ``MAX_CALL_S``, the time the server lets this replica
answer it. With tracing on, each call is a server span continuing the caller's W3C context from the NATS
headers, and the daemon's call continues it in turn (``traceparent`` in the gRPC metadata).

Leaving (SIGTERM): unsubscribe first (no new calls arrive), then let the calls in flight finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from worldrt import telemetry
from worldrt.errors import reason_in
from worldrt.host.lattice._nats import Lattice
from worldrt.host.lattice._wire import (
    ALIVE,
    ALIVE_EVERY_S,
    END,
    EVENT,
    H_COST,
    H_KIND,
    H_MESSAGE,
    H_METADATA,
    H_REASON,
    H_REPLICA,
    H_STATUS,
    H_TIMEOUT_MS,
    HEADER_ROOM,
    LATTICE_OWNER,
    LATTICE_RPCS,
    MAX_CALL_S,
    OWNED_RPCS,
    carries_ids,
    decode_metadata,
    queue_group,
    rpc_subject,
    stamp_ids,
    strip_ids,
)
from worldrt.host.routing import METHODS, Method, Supervisor

log = logging.getLogger("worldrt.lattice")
# A call that names no deadline gets this one (the caller's router always sends one).
DEFAULT_TIMEOUT_S = 120.0
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@dataclass
class _Served:
    name: str
    subscriptions: list[Subscription] = field(default_factory=list)
    channel: grpc.aio.Channel | None = None
    address: str = ""


class Bridge:
    """Runs on the lattice's loop; ``tend`` (called there periodically) follows the daemons' health."""

    def __init__(self, lattice: Lattice, replica: str, supervisor: Supervisor, providers: list[str]) -> None:
        self.lattice = lattice
        self.replica = replica
        self.supervisor = supervisor
        self._served = {name: _Served(name) for name in providers}
        self._inflight: set[asyncio.Task[None]] = set()
        # reply subject -> (provider, when the call arrived), for every call in flight
        self._working: dict[str, tuple[str, float]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._leaving = False

    @property
    def providers(self) -> list[str]:
        return list(self._served)

    def joined(self, name: str) -> bool:
        served = self._served.get(name)
        return served is not None and bool(served.subscriptions)

    def _healthy(self, name: str) -> bool:
        child = self.supervisor.child(name)
        return child is not None and child.healthy and child.proc is not None and child.proc.poll() is None

    async def tend(self) -> None:
        """Join the groups of daemons that are healthy, leave those of daemons that are not."""
        if self._leaving:
            return
        for served in self._served.values():
            healthy = self._healthy(served.name)
            if healthy and not served.subscriptions:
                await self._join(served)
            elif not healthy and served.subscriptions:
                log.warning("provider %s is not healthy: leaving the lattice's queue group for it", served.name)
                await self._unsubscribe(served)

    async def _join(self, served: _Served) -> None:
        child = self.supervisor.child(served.name)
        assert child is not None
        if served.channel is None or served.address != child.address:
            if served.channel is not None:
                await served.channel.close()
            served.channel = grpc.aio.insecure_channel(child.address, options=_CHANNEL_OPTIONS)
            served.address = child.address
        nc, lattice = self.lattice.nc, self.lattice.name
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._keep_alive())

        async def on_call(msg: Msg) -> None:
            task = asyncio.get_running_loop().create_task(self._serve(served, msg))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

        served.subscriptions = [
            await nc.subscribe(rpc_subject(lattice, served.name, "*"), queue=queue_group(lattice, served.name),
                               cb=on_call),
            await nc.subscribe(rpc_subject(lattice, served.name, "*", self.replica), cb=on_call),
        ]
        await nc.flush()
        log.info("provider %s joined the lattice %s as replica %s", served.name, lattice, self.replica)

    async def _unsubscribe(self, served: _Served) -> None:
        subscriptions, served.subscriptions = served.subscriptions, []
        for subscription in subscriptions:
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - a connection being closed has no subscriptions left
                log.debug("unsubscribe: %s", exc)
        try:
            await self.lattice.nc.flush(timeout=2)
        except Exception:  # noqa: BLE001 - the server forgets a lost connection's subscriptions itself
            pass

    async def _end(self, reply: str, code: grpc.StatusCode, message: str, data: bytes = b"", cost: str = "",
                   reason: str = "") -> None:
        headers = {H_KIND: END, H_STATUS: str(code.value[0]), H_MESSAGE: message, H_REPLICA: self.replica}
        if cost:
            headers[H_COST] = cost
        if reason:
            headers[H_REASON] = reason
        limit = self.lattice.max_payload - HEADER_ROOM
        if len(data) > limit:
            headers.update({H_STATUS: str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]), H_MESSAGE: (
                f"the reply of {len(data)} bytes is above the lattice's payload limit of {self.lattice.max_payload} "
                f"bytes (nats-server max_payload); ask for less, or raise max_payload on the lattice's server")})
            data = b""
        await self.lattice.nc.publish(reply, data, headers=headers)

    async def _keep_alive(self) -> None:
        """Tell the caller of every call in flight for longer than ALIVE_EVERY_S that it is still worked on."""
        headers = {H_KIND: ALIVE, H_REPLICA: self.replica}
        while True:
            await asyncio.sleep(ALIVE_EVERY_S)
            due = time.monotonic() - ALIVE_EVERY_S
            healthy = {name: self._healthy(name) for name in self._served}
            for reply, (name, since) in list(self._working.items()):
                # A daemon that stopped answering its health checks is presumed hung: its callers hear silence.
                if since <= due and healthy.get(name):
                    try:
                        await self.lattice.nc.publish(reply, b"", headers=headers)
                    except Exception as exc:  # noqa: BLE001 - a lost connection: the callers retry
                        log.debug("alive: %s", exc)
                        break

    async def _serve(self, served: _Served, msg: Msg) -> None:
        reply = msg.reply
        if not reply:
            return
        rpc = msg.subject.rsplit(".", 1)[-1]
        method = METHODS.get(rpc)
        if method is None:
            await self._end(reply, grpc.StatusCode.UNIMPLEMENTED,
                            f"{rpc} is not an RPC of worldrt.v1.WorldRuntime as replica {self.replica} knows it")
            return
        if rpc not in LATTICE_RPCS:
            log.warning("refused %s of %s over the lattice", rpc, served.name)
            await self._end(reply, grpc.StatusCode.PERMISSION_DENIED, (
                f"{rpc} is not carried over the lattice: replica {self.replica} of {served.name} takes only the world's "
                f"operations ({', '.join(sorted(LATTICE_RPCS))}); {rpc} stays between a host and its own daemons"))
            return
        self._working[reply] = (served.name, time.monotonic())
        try:
            await self._forward(served, method, msg, reply)
        except Exception as exc:
            log.exception("bridging %s.%s", served.name, rpc)
            await self._end(reply, grpc.StatusCode.INTERNAL, f"replica {self.replica} failed to forward {rpc}: {exc}")
        finally:
            self._working.pop(reply, None)

    def _request(self, method: Method, data: bytes) -> bytes:
        if not carries_ids(method.request):
            return data
        request = method.request.FromString(data)
        strip_ids(request, self.replica)
        return request.SerializeToString()

    def _reply(self, method: Method, data: bytes) -> bytes:
        if not carries_ids(method.reply):
            return data
        reply = method.reply.FromString(data)
        stamp_ids(reply, self.replica)
        return reply.SerializeToString()

    async def _forward(self, served: _Served, method: Method, msg: Msg, reply: str) -> None:
        headers = msg.headers or {}
        try:
            timeout = max(0.001, int(headers.get(H_TIMEOUT_MS, "")) / 1000)
        except ValueError:
            timeout = DEFAULT_TIMEOUT_S
        timeout = min(timeout, MAX_CALL_S)
        hop = _hop_span(self.replica, served.name, method.rpc, headers)
        metadata = [*telemetry.without_trace(decode_metadata(headers.get(H_METADATA))), *hop.carrier(),
                    ("authorization", f"Bearer {self.supervisor.token}")]
        if method.rpc in OWNED_RPCS:
            metadata.append(("x-worldrt-owner", LATTICE_OWNER))
        with hop:
            code, message = await self._call_daemon(served, method, msg, reply, timeout, metadata)
            hop.status(code, message)
        telemetry.inc("worldrt_lattice_bridged_total", served.name, method.rpc, code.name)

    async def _call_daemon(self, served: _Served, method: Method, msg: Msg, reply: str, timeout: float,
                           metadata: list[tuple[str, str]]) -> tuple[grpc.StatusCode, str]:
        """Make the call on the daemon and send its end to the caller; the status it ended with."""
        data = self._request(method, msg.data)
        channel = served.channel
        if channel is None:
            message = f"replica {self.replica} of {served.name} is leaving"
            await self._end(reply, grpc.StatusCode.UNAVAILABLE, message)
            return grpc.StatusCode.UNAVAILABLE, message
        try:
            if method.streaming:
                stream: Any = channel.unary_stream(method.path)(data, timeout=timeout, metadata=metadata)  # type: ignore[arg-type]
                async for item in stream:
                    event = self._reply(method, item)
                    if len(event) > self.lattice.max_payload - HEADER_ROOM:
                        stream.cancel()
                        await self._end(reply, grpc.StatusCode.RESOURCE_EXHAUSTED, (
                            f"an event of {len(event)} bytes is above the lattice's payload limit of "
                            f"{self.lattice.max_payload} bytes (nats-server max_payload)"))
                        return grpc.StatusCode.RESOURCE_EXHAUSTED, "an event above the lattice's payload limit"
                    await self.lattice.nc.publish(reply, event, headers={H_KIND: EVENT, H_REPLICA: self.replica})
                await self._end(reply, grpc.StatusCode.OK, "", cost=_cost(await stream.trailing_metadata()))
            else:
                call: Any = channel.unary_unary(method.path)(data, timeout=timeout, metadata=metadata)  # type: ignore[arg-type]
                out = await call
                await self._end(reply, grpc.StatusCode.OK, "", self._reply(method, out),
                                _cost(await call.trailing_metadata()))
        except grpc.aio.AioRpcError as exc:
            trailers = exc.trailing_metadata()
            await self._end(reply, exc.code(), exc.details() or "", cost=_cost(trailers), reason=reason_in(trailers))
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""

    async def leave(self, grace_s: float = 30.0) -> None:
        """Leave every queue group, then wait (up to ``grace_s``) for the calls in flight to finish."""
        self._leaving = True
        for served in self._served.values():
            await self._unsubscribe(served)
        if self._inflight:
            log.info("waiting for %d lattice call(s) in flight", len(self._inflight))
            await asyncio.wait(set(self._inflight), timeout=grace_s)
        if self._ticker is not None:
            self._ticker.cancel()
        for served in self._served.values():
            if served.channel is not None:
                await served.channel.close()
                served.channel = None


def _hop_span(replica: str, provider: str, rpc: str, headers: dict[str, str]) -> telemetry.Span:
    """The lattice hop as a server span on this replica, continuing the caller's trace from the NATS
    headers (telemetry.NOOP while tracing is off)."""
    if not telemetry.tracing():
        return telemetry.NOOP
    return telemetry.span(f"lattice {provider}.{rpc}", {
        "messaging.system": "nats", "worldrt.provider": provider, "worldrt.replica": replica, "rpc.method": rpc},
        kind="server", parent=headers)


def _cost(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "x-worldrt-cost-units":
            return str(value)
    return ""
