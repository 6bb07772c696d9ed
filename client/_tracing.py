"""A client call as one client span while tracing is on: a public method that makes several Host API calls
(``components.run``: load, links, invoke; a provider operation: the link it needs, then the call) is one
span, and each Host API call inside it is part of it rather than a trace of its own.

Invariants: while tracing is off nothing is made (a test of a module global); the span is current while
the call runs, so the host continues it (its context goes in the call's metadata, ``telemetry.carrier``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar

from worldrt import telemetry

_IN_CALL: ContextVar[bool] = ContextVar("worldrt_client_call", default=False)
NO_SPAN = nullcontext()  # what a call is in while tracing is off (``x if telemetry.tracing() else NO_SPAN``)


@contextmanager
def client_call(name: str) -> Iterator[None]:
    """The block as the client span ``name``, unless tracing is off or an enclosing call has one."""
    if not telemetry.tracing() or _IN_CALL.get():
        yield
        return
    token = _IN_CALL.set(True)
    try:
        with telemetry.span(name, kind="client"):
            yield
    finally:
        _IN_CALL.reset(token)
