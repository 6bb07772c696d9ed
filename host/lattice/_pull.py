"""A pull consumer's batches, told apart from the server's status replies by where they come from.

nats-py's ``fetch`` takes any delivery with a ``Status`` header for the server's status (no messages, a
request that timed out) and drops it unacknowledged, so a stored record that a member published with such
a header never reached the registry and was never acknowledged: it held the consumer's ack floor, so
nothing after it was purged, and the stream filled for every host. Here a delivery is a stored message
exactly when its reply subject is a JetStream acknowledgement subject, which only the server gives; the
headers a publisher chose are never read to decide that. Only the server publishes on the inbox (no member
may), so a delivery without one is the server's status, and its code is read.

Each pull request has a reply subject of its own under the inbox: a status ends the request it answers
and no other, so a late status of an earlier request (one held over a reconnect, or answered after its
fetch gave up) is dropped instead of ending the next request early and leaving it open on the server.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from worldrt.host.lattice._nats import LatticeDown

ACK_PREFIX = "$JS.ACK."
# The server's status codes on a pull: a heartbeat, no messages now, the request expired; any other (409
# consumer deleted or too many waiting requests, 503 no stream) is a refusal.
_HEARTBEAT, _ENDED = "100", ("404", "408")


class Puller:
    """Batches of the durable consumer ``durable`` of ``stream`` (``await start()`` first), on an inbox of
    this connection's own."""

    def __init__(self, nc: Any, stream: str, durable: str, api_prefix: str = "$JS.API") -> None:
        self._nc = nc
        self._what = f"the pull of {durable} on {stream}"
        self._next = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._requests = 0
        self._sub: Any = None
        self._arrived: deque[Any] = deque()
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._deliver)

    async def _deliver(self, msg: Any) -> None:
        self._arrived.append(msg)
        self._wake.set()

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        """Up to ``batch`` stored messages: what the consumer has now, else what comes within ``timeout``
        seconds (as nats-py's ``fetch``: a request that does not wait, then one that does). A stored message
        of an earlier request that came after its fetch ended is taken into this batch (and acknowledged as
        any other). LatticeDown when the server refuses the pull (its consumer or stream is gone)."""
        if not self._nc.is_connected:  # a request now would wait in the client and reach the server late
            await asyncio.sleep(min(timeout, 0.5))
            return []
        messages = await self._request({"batch": batch, "no_wait": True}, batch, timeout)
        if messages:
            return messages
        return await self._request({"batch": batch, "expires": int(timeout * 1e9)}, batch, timeout)

    async def _request(self, request: dict[str, Any], batch: int, timeout: float) -> list[Any]:
        """The stored messages one pull request brings, until ``batch`` of them or the server's status."""
        self._requests += 1
        reply = f"{self._inbox}.{self._requests}"
        await self._nc.publish(self._next, json.dumps(request).encode(), reply=reply)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout + 1.0  # the server answers an expired request itself at ``timeout``
        messages: list[Any] = []
        while len(messages) < batch:
            if not self._arrived:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
                continue
            msg = self._arrived.popleft()
            if (msg.reply or "").startswith(ACK_PREFIX):
                messages.append(msg)
            elif msg.subject == reply:  # the server's status of this request
                status = (msg.headers or {}).get("Status", "")
                if status == _HEARTBEAT:
                    continue
                if status in _ENDED or messages:
                    break
                raise LatticeDown(f"the lattice's server refused {self._what}: {status} "
                                  f"{(msg.headers or {}).get('Description', '')}".rstrip())
        return messages

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
