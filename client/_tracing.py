"""A client call as one client span while tracing is on: a public method that makes several Host API calls
(``components.run``: load, links, invoke; a provider operation: the link it needs, then the call) is one
span, and each Host API call inside it is part of it rather than a trace of its own.

Invariants: while tracing is off nothing is made (a test of a module global); the span is current while
the call runs, so the host continues it (its context goes in the call's metadata, ``telemetry.carrier``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar

from worldrt import telemetry

_IN_CALL: ContextVar[bool] = ContextVar("worldrt_client_call", default=False)
_NO_SPAN: AbstractContextManager[None] = nullcontext()


def client_call(client: str, method: str) -> AbstractContextManager[None]:
    """The block as the client span ``CLIENT/METHOD``; nothing (one shared object, no name made) while
    tracing is off or an enclosing call has a span."""
    if not telemetry.tracing() or _IN_CALL.get():
        return _NO_SPAN
    return _spanned(f"{client}/{method}")


@contextmanager
def _spanned(name: str) -> Iterator[None]:
    token = _IN_CALL.set(True)
    try:
        with telemetry.span(name, kind="client"):
            yield
    finally:
        _IN_CALL.reset(token)
