"""Waiting on the event loop until a non-blocking descriptor can be read or written."""

from __future__ import annotations

import asyncio


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def ready(fd: int, *, write: bool = False, future: asyncio.Future[None] | None = None) -> None:
    """Return once ``fd`` is readable (writable with ``write``). ``future``, if given, is the one waited on,
    so its owner can fail the wait early (it then removes the watch itself, before closing ``fd``)."""
    loop = asyncio.get_running_loop()
    waiter = future if future is not None else loop.create_future()
    watch, unwatch = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    watch(fd, _wake, waiter)
    try:
        await waiter
    finally:
        failed_by_owner = waiter.done() and not waiter.cancelled() and waiter.exception() is not None
        if not failed_by_owner:
            unwatch(fd)
