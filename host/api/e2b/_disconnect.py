"""A client that goes away ends its stream at once: ``until_disconnect(app)`` runs an ASGI app (envd's
connectrpc apps) while it listens, on the request's own ``receive()``, for ``http.disconnect``; when that
comes before the answer is complete, the app's task is cancelled, so its generator's ``finally`` runs and
what the stream held (a per-sandbox turn, a directory watch) is given back then.

Uvicorn drops what an app sends after the client has gone, without an error, so without this a stream
whose client left would only end with its process or its watch. The app still reads its body through the
wrapper as before; once the body is complete, the wrapper alone calls the server's ``receive()``, and an
app that asks again gets ``http.disconnect`` when the client goes or the answer is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

Message = dict[str, Any]
_DISCONNECT: Message = {"type": "http.disconnect"}


def until_disconnect(app: Any) -> Any:
    """``app`` cancelled the moment its client goes away before its answer is complete."""

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        body_done = asyncio.Event()
        gone = asyncio.Event()
        complete = False

        async def app_receive() -> Message:
            if body_done.is_set():
                await gone.wait()
                return _DISCONNECT
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_done.set()
            return message

        async def app_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        async def listen() -> None:
            await body_done.wait()
            while not gone.is_set():
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()

        task = asyncio.ensure_future(app(scope, app_receive, app_send))
        listener = asyncio.ensure_future(listen())
        try:
            await asyncio.wait({task, listener}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and gone.is_set() and not complete:
                task.cancel()  # the client left mid-answer: what its stream holds is released now
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except ConnectError as exc:  # connectrpc answers a cancelled stream so; nobody hears it
                    if exc.code != Code.CANCELED:
                        raise
                return
            await task
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            if not task.done():  # this request itself was cancelled (the server stops)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    return watched


__all__ = ["until_disconnect"]
