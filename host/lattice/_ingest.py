"""``worldrt registry serve``'s consumer: the lattice's invocation and run streams into one DuckDB file.

A durable pull consumer per stream (``registry``, acknowledge-all) fetches batches; each batch is
written in one DuckDB transaction, and only once it is committed is the batch's last message
acknowledged (which acknowledges the batch). A registry killed before its ack gets the batch again;
``Registry.ingest`` skips every id already there, so nothing is doubled, and JetStream's own
``Nats-Msg-Id`` window drops a host's repeated publish before it is stored.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js import api

from worldrt.host.lattice._member import ensure_streams
from worldrt.host.lattice._nats import Lattice
from worldrt.host.lattice._wire import invocations_stream, invocations_subject, runs_stream, runs_subject
from worldrt.host.registry import Registry, parse_record

log = logging.getLogger("worldrt.registry")
BATCH = 5000
DURABLE = "registry"


class Ingest:
    """Runs on the lattice's loop until ``stop``; ``ingested`` counts rows and runs written."""

    def __init__(self, lattice: Lattice, registry: Registry) -> None:
        self.lattice = lattice
        self.registry = registry
        self.ingested = 0
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        lattice.run(self._start(), timeout_s=30)

    async def _start(self) -> None:
        await ensure_streams(self.lattice)
        config = api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, max_ack_pending=-1, ack_wait=60.0)
        name = self.lattice.name
        self._rows = await self.lattice.js.pull_subscribe(invocations_subject(name), durable=DURABLE,
                                                          stream=invocations_stream(name), config=config)
        self._runs = await self.lattice.js.pull_subscribe(runs_subject(name), durable=DURABLE,
                                                          stream=runs_stream(name), config=config)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(self._rows, rows=True)),
                       loop.create_task(self._consume(self._runs, rows=False))]

    async def _fetch(self, subscription: object, timeout: float) -> list[object]:
        try:
            return await subscription.fetch(BATCH, timeout=timeout)  # type: ignore[attr-defined, no-any-return]
        except TimeoutError:
            return []

    async def _consume(self, subscription: object, *, rows: bool) -> None:
        """Write batch after batch; the next batch is fetched while this one is written."""
        loop = asyncio.get_running_loop()
        ahead: asyncio.Task[list[object]] = loop.create_task(self._fetch(subscription, 0.5))
        while not self._stopping:
            try:
                batch = await ahead
                ahead = loop.create_task(self._fetch(subscription, 0.5))
                if not batch:
                    continue
                if rows:
                    parsed = [parse_record(msg.data) for msg in batch]  # type: ignore[attr-defined]
                    good = [row for row in parsed if row is not None]
                    if len(good) < len(parsed):
                        log.warning("dropping %d damaged invocation record(s)", len(parsed) - len(good))
                    await asyncio.to_thread(self.registry.ingest, good, ())
                else:
                    await asyncio.to_thread(self.registry.ingest, (), [msg.data for msg in batch])  # type: ignore[attr-defined]
                await batch[-1].ack_sync()  # type: ignore[attr-defined]
                self.ingested += len(batch)
            except asyncio.CancelledError:
                ahead.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - unacknowledged messages come again; keep consuming
                log.warning("registry ingest: %s; retrying", exc)
                await asyncio.sleep(0.5)
        ahead.cancel()

    def stop(self) -> None:
        async def halt() -> None:
            self._stopping = True
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=10)

        self.lattice.run(halt(), timeout_s=15)
