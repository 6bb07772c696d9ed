"""The bounds every compatible HTTP API of worldrt serves under, in one place: what a request may send and
how long it may take to send it, how many connections and requests the server holds at once, and how many
calls may wait on the host at once, in all and per instance.

Every bound refuses at once and says so (401, 408, 413, 429 or 503 with ``Retry-After``, or a closed
connection for one that never sent its headers); none makes a caller wait behind another caller's slow call.
"""

from __future__ import annotations

from dataclasses import dataclass

from worldrt.errors import InvalidArgument

# The host's gRPC server takes messages of at most 4 MiB, so a larger body could not reach it anyway.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class HttpLimits:
    # A request body larger than this is refused with 413: at once when Content-Length says so, else as
    # soon as the streamed (chunked) body passes it. Nothing larger is ever held in memory.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # A connection must have sent a request's complete headers within this long of opening (or of the end
    # of its previous answer), or it is closed: a client trickling its headers (slowloris) holds nothing.
    header_timeout_s: float = 10.0
    # While a request's body is still coming, at most this long between two of its pieces, else 408; while
    # an answer is going out, at most this long with the client reading none of it, else it is cut off.
    body_idle_timeout_s: float = 30.0
    # An idle kept-alive connection is closed after this long.
    keep_alive_s: int = 5
    # Open connections at most; one more is answered 503 with Retry-After and closed, before it is read.
    max_connections: int = 4096
    # Requests being answered at once at most; one more is answered 503 with Retry-After.
    max_in_flight: int = 1024
    # Calls waiting on the host at once (each holds a thread), in all: one more is answered 503.
    max_host_calls: int = 64
    # Calls running on the host for one instance at once, and more waiting for their turn (costing no
    # thread): one more is answered 429, so a flood of calls on one instance slows only that instance.
    calls_per_instance: int = 4
    queued_per_instance: int = 16
    # What ``Retry-After`` says on a 429 or 503.
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_connections", "max_in_flight", "max_host_calls", "calls_per_instance",
                     "keep_alive_s", "retry_after_s"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.queued_per_instance < 0:
            raise InvalidArgument(f"queued_per_instance must be at least 0, got {self.queued_per_instance}")
        for name in ("header_timeout_s", "body_idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidArgument(f"{name} must be more than 0, got {getattr(self, name)}")
