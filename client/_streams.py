"""The Host API reports a streamed call's events to a callback and returns its result; these turn such a
call into an iterator (sync: the call runs on a thread of its own) or an async iterator.

Invariants: items come in the order the host reported them, then one ``Last`` holding the result; a
failed call raises its error where the iterator is read, after the items before it; leaving the loop
early cancels the call where the transport can (grpc.aio) and otherwise lets it run to its end on its
thread, whose items are then dropped.
"""

from __future__ import annotations

import asyncio
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


def iterate(run: Callable[[Sink], Any]) -> Iterator[Any]:
    """The events ``run(sink)`` reports to ``sink`` as they come, then ``Last(its result)``."""
    items: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def work() -> None:
        try:
            items.put(Last(run(items.put)))
        except BaseException as exc:  # noqa: BLE001 - raised where the iterator is read
            items.put(_Failed(exc))

    threading.Thread(target=work, name="worldrt-stream", daemon=True).start()
    while True:
        item = items.get()
        if isinstance(item, _Failed):
            raise item.error
        yield item
        if isinstance(item, Last):
            return


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
