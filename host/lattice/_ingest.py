"""``worldrt registry serve``'s consumer: the lattice's invocation and run streams into one DuckDB file.

* One durable pull consumer ``registry`` per stream acknowledges each message by itself (AckPolicy.EXPLICIT),
  and only once the DuckDB transaction holding its row has committed, or once the record is in the
  dead-letter stream. Nothing is ever acknowledged for another message: a registry killed at any point gets
  every message it had not acknowledged again (after its redelivery wait, ACK_WAIT_S unless told), and
  ``Registry.ingest`` skips ids already there, so redelivery never doubles a row.
* A batch is one transaction. When a record in it cannot be a row (RecordError), the batch is split in
  halves until each such record is alone: every other row lands, and each such record goes to
  ``WORLDRT_DEADLETTER_{L}`` (subject ``worldrt.deadletter.{L}.{kind}``) with the reason and is then
  acknowledged. When the registry itself cannot write (RegistryError: a full disk, a lost file), nothing is
  acknowledged; the batch comes again later.
* A record must name in its ``x-worldrt-host`` header the host of the subject it came on
  (``worldrt.registry.{L}.{kind}.{H}``, where only host H may publish); one that does not is a dead letter.
  Each row keeps that host (``host_id``). Records stored under the one subject of older versions (no host)
  are written with no host.
* Batches are pulled by ``Puller``, which tells a stored record from the server's status by its reply
  subject, never by the headers its publisher chose (nats-py's fetch dropped a record with a ``Status``
  header unacknowledged, holding back every purge).
* What is acknowledged is purged from the stream (up to the consumer's ack floor), so the streams' limits
  count only records not yet written; a full stream refuses new records, which wait in their hosts' outboxes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from nats.js import api
from nats.js.errors import NotFoundError

from worldrt.host.lattice._member import INVOCATIONS, RUNS, StreamLimits, ensure_streams
from worldrt.host.lattice._nats import Lattice, LatticeDown
from worldrt.host.lattice._pull import Puller
from worldrt.host.lattice._wire import (
    H_DEAD_REASON,
    H_DEAD_SEQUENCE,
    H_DEAD_SUBJECT,
    H_HOST,
    deadletter_subject,
    host_of_subject,
    invocations_stream,
    runs_stream,
)
from worldrt.host.registry import RecordError, Registry, parse_record

log = logging.getLogger("worldrt.registry")
BATCH = 5000
DURABLE = "registry"
# By default, a message not acknowledged this long after its delivery is delivered again (to a restarted
# registry too).
ACK_WAIT_S = 30.0
RETRY_S = 2.0
PURGE_EVERY_S = 2.0
DEADLETTER_TIMEOUT_S = 5.0
# Room left in a dead letter for its headers (the record is cut to fit the server's max_payload).
_HEADER_ROOM = 8192


@dataclass(eq=False)
class _Record:
    msg: Any
    host: str | None = None
    item: Any = None
    reason: str = ""


@dataclass
class _Outcome:
    committed: list[_Record] = field(default_factory=list)
    dead: list[_Record] = field(default_factory=list)
    failure: BaseException | None = None


def _one_line(text: str, limit: int = 1000) -> str:
    return " ".join(text.split())[:limit]


class Ingest:
    """Runs on the lattice's loop until ``stop``; ``ingested`` counts messages written as rows or runs,
    ``dead_letters`` the records sent to the dead-letter stream."""

    def __init__(self, lattice: Lattice, registry: Registry, limits: StreamLimits | None = None,
                 redeliver_after_s: float = ACK_WAIT_S) -> None:
        if not redeliver_after_s > 0:
            raise ValueError(f"the redelivery wait must be above 0 seconds, not {redeliver_after_s}")
        self.lattice = lattice
        self.registry = registry
        self.limits = limits or StreamLimits()
        self.redeliver_after_s = redeliver_after_s
        self.ingested = 0
        self.dead_letters = 0
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions: list[Puller] = []
        lattice.run(self._start(), timeout_s=30)

    async def _start(self) -> None:
        await ensure_streams(self.lattice, self.limits, manage=True)
        subscriptions = {kind: await self._subscribe(stream) for kind, stream in self._streams().items()}
        self._subscriptions = list(subscriptions.values())
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(kind, self._streams()[kind], sub))
                       for kind, sub in subscriptions.items()]

    def _streams(self) -> dict[str, str]:
        return {INVOCATIONS: invocations_stream(self.lattice.name), RUNS: runs_stream(self.lattice.name)}

    async def _subscribe(self, stream: str) -> Puller:
        """The durable consumer's puller, the consumer made first when it is not there."""
        await self._ensure_consumer(stream)
        puller = Puller(self.lattice.nc, stream, DURABLE)
        await puller.start()
        return puller

    async def _ensure_consumer(self, stream: str) -> None:
        """Make the durable consumer when it is not there; one an older registry made (acknowledging all below
        each batch) is made again to acknowledge each message, starting after the last message it had
        acknowledged; one with another redelivery wait is given this registry's."""
        js = self.lattice.js
        config = api.ConsumerConfig(durable_name=DURABLE, ack_policy=api.AckPolicy.EXPLICIT,
                                    ack_wait=self.redeliver_after_s,
                                    max_ack_pending=-1, max_deliver=-1, deliver_policy=api.DeliverPolicy.ALL)
        try:
            info = await js.consumer_info(stream, DURABLE)
        except NotFoundError:
            info = None
        if info is not None and (info.config.ack_policy != api.AckPolicy.EXPLICIT or info.config.filter_subject):
            start = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
            log.info("stream %s: its consumer acknowledged all below each batch; it is made again to acknowledge "
                     "each message, from message %d", stream, start)
            await js.delete_consumer(stream, DURABLE)
            config = config.evolve(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
            info = None
        if info is None:
            await js.add_consumer(stream, config)
        elif info.config.ack_wait != self.redeliver_after_s:
            await js.add_consumer(stream, info.config.evolve(ack_wait=self.redeliver_after_s))

    async def _fetch(self, subscription: Puller, timeout: float) -> list[Any]:
        return await subscription.fetch(BATCH, timeout=timeout)

    async def _consume(self, kind: str, stream: str, subscription: Puller) -> None:
        """Write batch after batch; the next batch is fetched while this one is written."""
        loop = asyncio.get_running_loop()
        ahead: asyncio.Task[list[Any]] = loop.create_task(self._fetch(subscription, 0.5))
        # At start, what an earlier run acknowledged and did not purge yet is purged too (due). After a purge,
        # one more is due while the ack floor it saw was below what this loop acknowledged: the server applies
        # acknowledgements after it has answered for them, so a purge right after a batch can miss its end.
        purged, next_purge, acked_upto, due = 0, 0.0, 0, True
        while not self._stopping:
            try:
                batch = await ahead
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the fetch failed: nothing was taken; fetch afresh
                log.warning("registry ingest of %s: %s; fetching again", kind, exc)
                await asyncio.sleep(0.5)
                if isinstance(exc, LatticeDown):  # the server refused the pull: its consumer may be gone
                    try:
                        await self._ensure_consumer(stream)
                    except Exception as again:  # noqa: BLE001 - the next refusal comes here again
                        log.warning("registry ingest of %s: the consumer cannot be made again: %s", kind, again)
                ahead = loop.create_task(self._fetch(subscription, 0.5))
                continue
            try:
                ahead = loop.create_task(self._fetch(subscription, 0.5))
                if batch:
                    acked_upto = max(acked_upto, await self._handle(kind, batch))
                if (due or acked_upto > purged) and time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_EVERY_S
                    purged = await self._purge(stream, purged)
                    due = False
            except asyncio.CancelledError:
                ahead.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - unacknowledged messages come again; keep consuming
                log.warning("registry ingest of %s: %s; retrying", kind, exc)
                await asyncio.sleep(0.5)
        ahead.cancel()

    # one batch ---------------------------------------------------------------------------------------------
    def _record(self, kind: str, msg: Any) -> _Record:
        """A message as a record to write, or with the reason it is a dead letter."""
        record = _Record(msg)
        try:
            record.host = host_of_subject(msg.subject, self.lattice.name, kind)
        except ValueError as exc:
            record.reason = str(exc)
            return record
        claimed = (msg.headers or {}).get(H_HOST)
        if record.host is not None and claimed != record.host:
            record.reason = (f"the record names host {claimed!r} but came on host {record.host!r}'s subject "
                             f"{msg.subject}" if claimed else f"the record names no host ({H_HOST} header) but came "
                             f"on host {record.host!r}'s subject {msg.subject}")
            return record
        if kind == INVOCATIONS:
            record.item = parse_record(msg.data, record.host)
            if record.item is None:
                record.reason = "not an intact invocation record (damaged, torn or of another format)"
        else:
            record.item = (msg.data, record.host)
        return record

    def _write(self, kind: str, records: list[_Record]) -> _Outcome:
        """Commit every record that can be a row (halving a batch that fails on a record until that record is
        alone); stop at the first failure of the registry itself (in a thread: DuckDB blocks)."""
        outcome = _Outcome()

        def attempt(part: list[_Record]) -> None:
            try:
                if kind == INVOCATIONS:
                    self.registry.ingest([r.item for r in part])
                else:
                    self.registry.ingest((), [r.item for r in part])
            except RecordError as exc:
                if len(part) == 1:
                    part[0].reason = str(exc)
                    outcome.dead.append(part[0])
                    return
                middle = len(part) // 2
                attempt(part[:middle])
                attempt(part[middle:])
                return
            outcome.committed.extend(part)

        try:
            attempt(records)
        except Exception as exc:  # noqa: BLE001 - the registry cannot write now; what is not committed comes again
            outcome.failure = exc
        return outcome

    async def _handle(self, kind: str, batch: list[Any]) -> int:
        """Write one batch; acknowledge what is committed or dead-lettered. The highest stream sequence
        acknowledged (0 when none)."""
        records = [self._record(kind, msg) for msg in batch]
        dead = [r for r in records if r.reason]
        good = [r for r in records if not r.reason]
        outcome = await asyncio.to_thread(self._write, kind, good) if good else _Outcome()
        acked = []
        for record in outcome.committed:
            await record.msg.ack()
            acked.append(record.msg.metadata.sequence.stream)
        self.ingested += len(outcome.committed)
        acked += await self._bury(kind, dead + outcome.dead)
        if outcome.failure is not None:
            waiting = [r for r in good if r not in outcome.committed and r not in outcome.dead]
            log.warning("registry: %d %s record(s) wait: %s", len(waiting), kind, outcome.failure)
            for record in waiting:
                await record.msg.nak(delay=RETRY_S)
        await self.lattice.nc.flush()
        if outcome.failure is not None:
            await asyncio.sleep(RETRY_S)
        return max(acked, default=0)

    async def _bury(self, kind: str, dead: list[_Record]) -> list[int]:
        """Put each record on the dead-letter stream with its reason, then acknowledge it (one that cannot be put
        there is not acknowledged, and comes again). The stream sequences acknowledged."""
        if not dead:
            return []
        room = self.lattice.max_payload - _HEADER_ROOM
        buried: list[int] = []
        for record in dead:
            msg = record.msg
            sequence = msg.metadata.sequence.stream
            headers = {H_DEAD_REASON: _one_line(record.reason), H_DEAD_SUBJECT: msg.subject,
                       H_DEAD_SEQUENCE: str(sequence), "Nats-Msg-Id": f"{msg.metadata.stream}.{sequence}"}
            claimed = (msg.headers or {}).get(H_HOST)
            if claimed:
                headers[H_HOST] = _one_line(claimed, 200)
            data = msg.data
            if len(data) > room:
                headers["x-worldrt-deadletter-bytes"] = str(len(data))
                data = data[:room]
            try:
                await self.lattice.js.publish(deadletter_subject(self.lattice.name, kind), data, headers=headers,
                                              timeout=DEADLETTER_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - not acknowledged: it comes again
                log.warning("registry: cannot put a dead %s record on the dead-letter stream (%s); it comes again",
                            kind, exc)
                await msg.nak(delay=RETRY_S)
                continue
            await msg.ack()
            buried.append(sequence)
        self.dead_letters += len(buried)
        if buried:
            log.warning("registry: %d %s record(s) could not be written and are in the dead-letter stream (subject "
                        "%s); the first: %s", len(buried), kind, deadletter_subject(self.lattice.name, kind),
                        _one_line(dead[0].reason, 300))
        return buried

    async def _purge(self, stream: str, purged: int) -> int:
        """Drop what is acknowledged from ``stream`` (every message up to the consumer's ack floor)."""
        info = await self.lattice.js.consumer_info(stream, DURABLE)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if floor > purged:
            await self.lattice.js.purge_stream(stream, seq=floor + 1)
            return floor
        return purged

    def stop(self) -> None:
        async def halt() -> None:
            self._stopping = True
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=10)
            for subscription in self._subscriptions:
                try:
                    await subscription.unsubscribe()  # else draining the connection waits out its pull requests
                except Exception as exc:  # noqa: BLE001 - a lost connection has no subscription left
                    log.debug("unsubscribing: %s", exc)

        self.lattice.run(halt(), timeout_s=15)
