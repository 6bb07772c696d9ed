"""The Host API reports a streamed call's events to a callback and returns its result; these turn such a
call into an iterator (sync: the call runs on a thread of its own) or an async iterator.

Invariants: items come in the order the host reported them, then one ``Last`` holding the result; a
failed call raises its error where the iterator is read, after the items before it; leaving the loop
early cancels the call where the transport can (grpc.aio) and otherwise lets it run to its end on its
thread, whose items are then dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

Sink = Callable[[Any], None]


@dataclass(frozen=True)
class Last:
    """The call's result, after every event."""

    result: Any


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _Stopped(Exception):
    """Raised into a call whose iterator was left: its reader is gone."""


def iterate(run: Callable[[Sink], Any], *, stop_when_left: bool = False) -> Iterator[Any]:
    """The events ``run(sink)`` reports to ``sink`` as they come, then ``Last(its result)``. With
    ``stop_when_left``, leaving the iterator early makes the sink raise at the call's next event, which
    ends the call there (a remote host's stream is cancelled) instead of at its own end."""
    items: queue.SimpleQueue[Any] = queue.SimpleQueue()
    left = threading.Event()

    def sink(event: Any) -> None:
        if left.is_set():
            raise _Stopped("the reader left")
        items.put(event)

    def work() -> None:
        try:
            items.put(Last(run(sink if stop_when_left else items.put)))
        except BaseException as exc:  # noqa: BLE001 - raised where the iterator is read
            items.put(_Failed(exc))

    # The call runs in the caller's context: a client span current here is its parent there.
    threading.Thread(target=contextvars.copy_context().run, args=(work,), name="worldrt-stream", daemon=True).start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _Failed):
                raise item.error
            yield item
            if isinstance(item, Last):
                return
    finally:
        left.set()


async def aiterate(run: Callable[[Sink], Awaitable[Any]]) -> AsyncIterator[Any]:
    """The events ``await run(sink)`` reports (on the loop's thread) as they come, then ``Last(result)``."""
    items: asyncio.Queue[Any] = asyncio.Queue()
    done = object()
    task = asyncio.ensure_future(run(items.put_nowait))
    task.add_done_callback(lambda _: items.put_nowait(done))
    try:
        while (item := await items.get()) is not done:
            yield item
        yield Last(task.result())
    finally:
        if not task.done():
            task.cancel()
