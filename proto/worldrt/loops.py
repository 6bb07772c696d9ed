"""The event loop worldrt's own servers run on: uvloop (libuv), unless ``WORLDRT_EVENT_LOOP=asyncio``.

A provider daemon, a host's service and a lattice bridge spend most of a call's CPU in the event loop's
own Python between grpc.aio, nats-py and TLS callbacks; on uvloop that loop is C. Measured here
(bench/lattice.py, same machine, alternating runs): an Execute through the lattice took 0.75-0.85 ms of
the bridge's CPU instead of 1.1-1.5 ms, and 0.77-0.87 ms of its daemon's instead of 1.1-1.45 ms.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "WORLDRT_EVENT_LOOP"


def uses_uvloop() -> bool:
    """Whether worldrt's servers run on uvloop (``WORLDRT_EVENT_LOOP`` is not ``asyncio``)."""
    choice = os.environ.get(ENV, "uvloop").strip().lower() or "uvloop"
    if choice not in ("uvloop", "asyncio"):
        raise ValueError(f"{ENV} is {choice!r}: use uvloop (the default) or asyncio")
    return choice == "uvloop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the chosen kind, for a thread of its own."""
    if uses_uvloop():
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a new loop of the chosen kind."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
