"""A streamed exec as Server-Sent Events without holding a thread of the server: the run waits on the host
on a thread admitted (and counted) by ``Admission`` until the run ends, even when the client has gone, and
hands its events to the event loop, where the response streams them.

A failure before the run's first event is raised (so it is answered with an HTTP status); one after it ends
the stream with a stderr line and exit code -1 (``MorphApi.stream_events``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

from worldrt.host.api._admission import Admission
from worldrt.host.api._morph import MorphApi
from worldrt.v1 import pb

_Item = pb.ExecutionEvent | pb.ExecutionResult | BaseException


async def stream_exec(api: MorphApi, admission: Admission, instance_id: str, command: list[str]) -> AsyncIterator[str]:
    """The run's SSE lines, once it has started; Busy or Saturated when it is not admitted."""
    release = await admission.acquire(instance_id)
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[_Item] = asyncio.Queue()

    def put(item: _Item) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, item)
        except RuntimeError:
            pass  # the loop is closed: the server has stopped and nobody reads the stream

    def run() -> None:
        try:
            put(api.execute_stream(instance_id, command, put))
        except BaseException as exc:  # noqa: BLE001 - handed to the stream's reader
            put(exc)
        finally:
            Admission.release_from_thread(loop, release)

    try:
        threading.Thread(target=run, name=f"exec-sse-{instance_id}", daemon=True).start()
    except BaseException:
        release()
        raise
    first = await items.get()
    if isinstance(first, BaseException):
        raise first
    return _lines(first, items)


async def _lines(item: _Item, items: asyncio.Queue[_Item]) -> AsyncIterator[str]:
    while True:
        events, last = MorphApi.stream_events(item)
        for event in events:
            yield f"data: {json.dumps(event)}\n\n"
        if last:
            break
        item = await items.get()
    yield "data: [DONE]\n\n"
