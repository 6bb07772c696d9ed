"""Calls over the lattice, from the calling side: one inbox subscription for every answer this host
waits for, and the rules that make replicas and failover invisible to a component.

* A call not bound to an instance goes to the provider's queue group (any healthy replica). When no
  replica answers at all ("no responders"), or the replica that took it falls silent for ``SILENCE_S``
  (killed, hung, cut off: its bridge says ``alive`` every ``ALIVE_EVERY_S`` while it works), the call is
  sent again to another replica the providers bucket lists as fresh, at most ``RETRIES`` times, within
  the caller's deadline. A replica that died mid-call took the work it started with it, so the retry does
  not run it twice; a stream is only retried before its first event.
* A call that names an instance or snapshot (``LOCAL@REPLICA``) goes to that replica only; if it is gone
  the call fails UNAVAILABLE naming the replica and the id.
* Every attempt has a reply subject of its own under this connection's inbox, with a random token: an
  answer on any other subject, or one that names another replica than the one the call went to (or
  than the first that answered), is dropped. With identities the server lets only this connection read
  that inbox and only the replica the call reached answer on it (host/lattice/_creds.py).
* The caller's W3C trace context goes as the NATS headers ``traceparent``/``tracestate`` (the bridge
  continues the trace); a call sent again to another replica counts in ``worldrt_lattice_failovers_total``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from worldrt import telemetry
from worldrt.errors import DeadlineExceeded, FailedPrecondition, ResourceExhausted, Unavailable
from worldrt.host.lattice._nats import Lattice
from worldrt.host.lattice._wire import (
    ALIVE,
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
    SILENCE_S,
    encode_metadata,
    providers_bucket,
    rpc_subject,
)
from worldrt.host.routing import Method

log = logging.getLogger("worldrt.lattice")
RETRIES = 4
# The first wait for a replica to rejoin when every known one left the queue group (doubled each time).
REJOIN_WAIT_S = 0.25
_CODES = {code.value[0]: code for code in grpc.StatusCode}
# How long a providers-bucket entry counts as fresh (its replica refreshes it every HEARTBEAT_S).
HEARTBEAT_S = 1.0
FRESH_S = 3.5


@dataclass
class Answer:
    code: grpc.StatusCode
    message: str
    data: bytes
    replica: str
    cost: float
    reason: str = ""


class _Lost(Exception):
    """The call reached no replica, or the one it reached fell silent."""

    def __init__(self, replica: str | None, why: str) -> None:
        super().__init__(why)
        self.replica = replica
        self.why = why


EventSink = Callable[[bytes], None]


class Caller:
    """Made on the lattice's loop (``await Caller.open(lattice)``)."""

    def __init__(self, lattice: Lattice, prefix: str, subscription: Subscription) -> None:
        self.lattice = lattice
        self._prefix = prefix
        self._subscription = subscription
        self._waiting: dict[str, asyncio.Queue[Msg]] = {}
        # key (provider.replica) -> its latest heartbeat, kept by a watch of the providers bucket (a host's)
        self.table: dict[str, dict[str, object]] | None = None

    @classmethod
    async def open(cls, lattice: Lattice) -> Caller:
        prefix = lattice.nc.new_inbox()
        holder: list[Caller] = []

        async def dispatch(msg: Msg) -> None:
            queue = holder[0]._waiting.get(msg.subject.rsplit(".", 1)[-1])
            if queue is not None:
                queue.put_nowait(msg)

        subscription = await lattice.nc.subscribe(f"{prefix}.*", cb=dispatch)
        holder.append(cls(lattice, prefix, subscription))
        return holder[0]

    async def _entries(self, provider: str) -> list[dict[str, object]]:
        """The providers bucket's entries for ``provider`` (each replica's last heartbeat): from the table a
        host's watch keeps, else read from the bucket."""
        if self.table is not None:
            return [value for key, value in list(self.table.items()) if key.partition(".")[0] == provider]
        try:
            kv = await self.lattice.js.key_value(providers_bucket(self.lattice.name))
            keys = await kv.keys()
        except Exception:  # noqa: BLE001 - an empty or missing bucket lists no replica
            return []
        found = []
        for key in keys:
            if key.partition(".")[0] != provider:
                continue
            try:
                entry = await kv.get(key)
                found.append(json.loads(entry.value or b"{}"))
            except Exception:  # noqa: BLE001 - an entry that expired between keys() and get()
                continue
        return found

    async def fresh_replicas(self, provider: str) -> list[str]:
        """Replicas of ``provider`` whose bridge said within FRESH_S that it serves it, healthy."""
        now = time.time()
        return [str(e.get("replica")) for e in await self._entries(provider)
                if e.get("healthy") and now - float(e.get("at", 0)) < FRESH_S]  # type: ignore[arg-type]

    async def call(self, provider: str, method: Method, data: bytes, metadata: list[tuple[str, str]],
                   timeout_s: float, *, bound: tuple[str, str] | None = None,
                   on_event: EventSink | None = None) -> Answer:
        """``bound`` is (replica, id) for a call that must reach the replica owning that id."""
        limit = self.lattice.max_payload - HEADER_ROOM
        if len(data) > limit:
            raise ResourceExhausted(
                f"the {method.rpc} request of {len(data)} bytes is above the lattice's payload limit of "
                f"{self.lattice.max_payload} bytes (nats-server max_payload); send less, or raise max_payload on "
                f"the lattice's server")
        deadline = time.monotonic() + timeout_s
        target = bound[0] if bound else "any"
        avoid: set[str] = set()
        delivered = [0]

        def counted(item: bytes) -> None:
            delivered[0] += 1
            if on_event is not None:
                on_event(item)

        for attempt in range(RETRIES + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(f"{provider}.{method.rpc} found no replica to answer before its deadline")
            try:
                return await self._attempt(provider, method, data, metadata, remaining, target, counted)
            except _Lost as lost:
                if bound is not None:
                    raise Unavailable(
                        f"replica {bound[0]} of {provider}, which holds {bound[1]}, is gone from the lattice "
                        f"({lost.why}); {bound[1]} is lost with it: start a new instance") from None
                if delivered[0]:
                    raise Unavailable(f"replica {lost.replica or '?'} of {provider} was lost in the middle of a "
                                      f"{method.rpc} stream ({lost.why}); run it again") from None
                if lost.replica:
                    avoid.add(lost.replica)
                if attempt < RETRIES:
                    telemetry.inc("worldrt_lattice_failovers_total", provider)
                if attempt == RETRIES:
                    raise Unavailable(f"no replica of {provider} on the lattice {self.lattice.name} answered "
                                      f"{method.rpc} ({lost.why})") from None
                entries = await self._entries(provider)
                now = time.time()
                others = [str(e.get("replica")) for e in entries if e.get("healthy") and str(e.get("replica")) not in avoid
                          and now - float(e.get("at", 0)) < FRESH_S]  # type: ignore[arg-type]
                if not others and lost.why == "no responders":
                    if not entries:
                        raise Unavailable(f"no replica of {provider} is on the lattice {self.lattice.name}; start one "
                                          f"with: worldrt host serve --lattice URL --providers {provider}") from None
                    # Its replicas are there but none is in the queue group now (a failed health check, a
                    # restart): wait a little for one to rejoin rather than fail the call.
                    await asyncio.sleep(min(REJOIN_WAIT_S * 2 ** attempt, max(0.0, deadline - time.monotonic())))
                target = random.choice(others) if others else "any"
        raise AssertionError("unreachable")

    async def _attempt(self, provider: str, method: Method, data: bytes, metadata: list[tuple[str, str]],
                       remaining: float, target: str, on_event: EventSink) -> Answer:
        token = secrets.token_hex(16)
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._waiting[token] = queue
        heard = target if target != "any" else None
        try:
            # The caller's W3C trace context rides as NATS headers of its own (traceparent, tracestate).
            headers = {H_METADATA: encode_metadata(telemetry.without_trace(metadata)),
                       H_TIMEOUT_MS: str(max(1, int(remaining * 1000))),
                       **{key: value for key, value in metadata if key in telemetry.TRACE_KEYS}}
            await self.lattice.nc.publish(rpc_subject(self.lattice.name, provider, method.rpc, target), data,
                                          reply=f"{self._prefix}.{token}", headers=headers)
            end = time.monotonic() + remaining
            while True:
                wait = min(SILENCE_S, end - time.monotonic())
                if wait <= 0:
                    raise DeadlineExceeded(f"{provider}.{method.rpc} on replica {heard or '?'} ran past its deadline")
                try:
                    async with asyncio.timeout(wait):
                        msg = await queue.get()
                except TimeoutError:
                    if end - time.monotonic() <= 0:
                        continue
                    raise _Lost(heard, f"replica {heard or '?'} fell silent for {SILENCE_S:.0f} s") from None
                headers = msg.headers or {}
                if headers.get("Status") == "503":
                    raise _Lost(None if target == "any" else target, "no responders")
                kind = headers.get(H_KIND)
                replica = headers.get(H_REPLICA)
                if not replica or (heard is not None and replica != heard):
                    log.warning("dropped an answer to %s.%s from replica %s: the call went to %s", provider,
                                method.rpc, replica or "(none named)", heard or "any replica")
                    continue
                heard = replica
                if kind == ALIVE:
                    continue
                if kind == EVENT:
                    on_event(msg.data)
                    continue
                code = _CODES.get(int(headers.get(H_STATUS, "2")), grpc.StatusCode.UNKNOWN)
                return Answer(code, headers.get(H_MESSAGE, ""), msg.data, headers.get(H_REPLICA, "") or "?",
                              float(headers.get(H_COST) or 0.0), headers.get(H_REASON, ""))
        finally:
            self._waiting.pop(token, None)

    async def close(self) -> None:
        try:
            await self._subscription.unsubscribe()
        except Exception:  # noqa: BLE001 - a closed connection has no subscription left
            pass


def bound_of(replicas: set[str], first: str, provider: str, rpc: str) -> tuple[str, str] | None:
    if not replicas:
        return None
    if len(replicas) > 1:
        raise FailedPrecondition(f"{rpc} names ids held by different replicas of {provider} ({', '.join(sorted(replicas))}); "
                                 f"one call can only reach one replica")
    return next(iter(replicas)), first
