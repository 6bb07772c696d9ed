"""A pull consumer's batches, told apart from the server's status replies by where they come from.

nats-py's ``fetch`` takes any delivery with a ``Status`` header for the server's status (no messages, a
request that timed out) and drops it unacknowledged, so a stored record that a member published with such
a header never reached the registry and was never acknowledged: it held the consumer's ack floor, so
nothing after it was purged, and the stream filled for every host. Here a delivery is a stored message
exactly when its reply subject is the JetStream acknowledgement subject of this stream and consumer,
which the server gives it; the headers a publisher chose are never read to decide that.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class Puller:
    """Batches of the durable consumer ``durable`` of ``stream`` (``await start()`` first), on an inbox of
    this connection's own: one pull request at a time, each expiring after the fetch's timeout."""

    def __init__(self, nc: Any, stream: str, durable: str, api_prefix: str = "$JS.API") -> None:
        self._nc = nc
        self._next = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._acked_on = f"$JS.ACK.{stream}.{durable}."  # the reply subject of each message it delivers
        self._inbox = nc.new_inbox()
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox)

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        """Up to ``batch`` stored messages: what the consumer has now, else what comes within ``timeout``
        seconds (as nats-py's ``fetch``: a request that does not wait, then one that does). A stored message
        of an earlier request that came after its fetch ended is taken into this batch (and acknowledged as
        any other); an earlier request's late status only ends this batch early."""
        messages = await self._request({"batch": batch, "no_wait": True}, batch, timeout)
        if messages:
            return messages
        return await self._request({"batch": batch, "expires": int(timeout * 1e9)}, batch, timeout)

    async def _request(self, request: dict[str, Any], batch: int, timeout: float) -> list[Any]:
        """The stored messages one pull request brings, until ``batch`` of them or the server's status."""
        await self._nc.publish(self._next, json.dumps(request).encode(), reply=self._inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout + 1.0  # the server answers an expired request itself at ``timeout``
        messages: list[Any] = []
        while len(messages) < batch:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                msg = await self._sub.next_msg(timeout=left)
            except TimeoutError:
                break
            if not (msg.reply or "").startswith(self._acked_on):
                break  # the server's status (no messages, the request expired): nothing more comes for it
            messages.append(msg)
        return messages

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
