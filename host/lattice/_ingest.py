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
from worldrt.host.registry import Registry, Row, parse_record

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
        self._task: asyncio.Task[None] | None = None
        lattice.run(self._start(), timeout_s=30)

    async def _start(self) -> None:
        await ensure_streams(self.lattice)
        config = api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, max_ack_pending=-1, ack_wait=60.0)
        name = self.lattice.name
        self._rows = await self.lattice.js.pull_subscribe(invocations_subject(name), durable=DURABLE,
                                                          stream=invocations_stream(name), config=config)
        self._runs = await self.lattice.js.pull_subscribe(runs_subject(name), durable=DURABLE,
                                                          stream=runs_stream(name), config=config)
        self._task = asyncio.get_running_loop().create_task(self._consume())

    async def _fetch(self, subscription: object, timeout: float) -> list[object]:
        try:
            return await subscription.fetch(BATCH, timeout=timeout)  # type: ignore[attr-defined, no-any-return]
        except TimeoutError:
            return []

    async def _consume(self) -> None:
        while not self._stopping:
            try:
                rows_msgs = await self._fetch(self._rows, 0.2)
                runs_msgs = await self._fetch(self._runs, 0.05 if rows_msgs else 0.2)
                if not rows_msgs and not runs_msgs:
                    continue
                rows: list[Row] = []
                for msg in rows_msgs:
                    row = parse_record(msg.data)  # type: ignore[attr-defined]
                    if row is None:
                        log.warning("dropping a damaged invocation record (%d bytes)", len(msg.data))  # type: ignore[attr-defined]
                    else:
                        rows.append(row)
                runs = [msg.data for msg in runs_msgs]  # type: ignore[attr-defined]
                await asyncio.to_thread(self.registry.ingest, rows, runs)
                for batch in (rows_msgs, runs_msgs):
                    if batch:
                        await batch[-1].ack_sync()  # type: ignore[attr-defined]
                self.ingested += len(rows) + len(runs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - unacknowledged messages come again; keep consuming
                log.warning("registry ingest: %s; retrying", exc)
                await asyncio.sleep(0.5)

    def stop(self) -> None:
        async def halt() -> None:
            self._stopping = True
            if self._task is not None:
                await asyncio.wait({self._task}, timeout=10)

        self.lattice.run(halt(), timeout_s=15)
