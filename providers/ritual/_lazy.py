"""Lazy verification: re-executions queued by ticket, run one at a time, results kept for fetching."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from worldrt import errors as err

R = TypeVar("R")
log = logging.getLogger("worldrt.ritual")


class LazyQueue(Generic[R]):
    def __init__(self, run: Callable[[Any], Awaitable[R]], *, max_pending: int = 1024, keep: int = 10_000) -> None:
        self._run = run
        self.max_pending = max_pending
        self.keep = keep
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._pending: set[str] = set()
        self._done: OrderedDict[str, R] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._consume())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def lookup(self, ticket: str) -> tuple[str, R | None] | None:
        """("pending", None), ("done", result), or None for a ticket never queued (or long forgotten)."""
        if ticket in self._pending:
            return "pending", None
        if ticket in self._done:
            self._done.move_to_end(ticket)
            return "done", self._done[ticket]
        return None

    def submit(self, ticket: str, job: Any) -> None:
        if len(self._pending) >= self.max_pending:
            raise err.ResourceExhausted(f"{self.max_pending} lazy verifications are already queued; "
                                        f"retry later or verify eagerly")
        self._pending.add(ticket)
        self._queue.put_nowait((ticket, job))

    async def _consume(self) -> None:
        while True:
            ticket, job = await self._queue.get()
            try:
                result = await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lazy verification %s failed", ticket)
                self._pending.discard(ticket)
                continue
            self._pending.discard(ticket)
            self._done[ticket] = result
            while len(self._done) > self.keep:
                self._done.popitem(last=False)
