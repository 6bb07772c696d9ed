"""Serving a compatible API's ASGI app with uvicorn, behind ``Guard``, with the two bounds no ASGI
middleware can keep: a deadline for a request's headers, and a cap on open connections.

Uvicorn has no header-read timeout (its issue #157 asks for ``--timeout-request-start`` since 2018): its
keep-alive timer is not armed on a new connection and is cancelled by the first byte of a request, so a
client that trickles its headers holds a connection, and a descriptor, for ever. Its ``limit_concurrency``
answers 503 only to a request that has arrived, counting the slow connections too, so it neither stops them
piling up nor leaves room for anyone else. So uvicorn's own HTTP/1.1 protocol (h11) is subclassed here for
exactly those two things, and everything else is uvicorn's configuration: ``h11_max_incomplete_event_size``
caps what one connection's unfinished headers may buffer, ``timeout_keep_alive`` closes idle connections,
websockets and HTTP/2 are off.

The same guarded server also runs embedded, as a task of a loop that owns its signals (``start_guarded``:
the Modal API's blob listener beside its gRPC server), on a socket bound here so no failure to listen can
end the process from inside uvicorn.

Invariants: a connection that has not sent a request's complete headers within ``header_timeout_s`` of
opening, or of the end of its previous answer, is closed; one opened beyond ``max_connections`` is answered
503 with ``Retry-After`` and closed before anything of it is read (at most 64 of those are kept half-closed
for a second, so that the answer arrives before the close); a client that reads nothing of an answer while
its unsent part is past the write buffer for ``body_idle_timeout_s`` is cut off (its buffered answer
dropped: a plain close would wait for it to be read); the process's descriptor limit is raised
(to its hard limit at most) so that the connections allowed fit in it, else the cap is lowered to fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from worldrt import telemetry
from worldrt.errors import InvalidArgument, Unavailable
from worldrt.host.api._guard import AsgiApp, Authorized, Guard, Problem
from worldrt.host.api._limits import HttpLimits
from worldrt.providers import is_loopback

log = logging.getLogger("worldrt.api.server")

# Descriptors kept for everything else the process opens (the host's channel, an embedded host's files).
_RESERVED_FDS = 512
# What one connection's unfinished request line and headers may buffer (uvicorn's and h11's default).
_MAX_HEADER_BYTES = 16 * 1024
# How long a refused connection is kept half-closed so that its client reads the 503 before the close
# (closing a socket with unread input sends a reset, which may overtake the answer), and how many may be
# kept so at once: beyond that a refused connection is closed at once, so refusals cost no descriptors.
_REFUSED_LINGER_S = 1.0
_MAX_LINGERING = 64


class _GuardedH11(H11Protocol):
    limits: ClassVar[HttpLimits]
    refusal: ClassVar[bytes]
    lingering: ClassVar[int] = 0  # refused connections kept half-closed now (one event loop: no lock)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._stalled: asyncio.TimerHandle | None = None
        self._refused = False
        self._lingers = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self.connections) >= self.limits.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._arm()

    def _refuse(self, transport: asyncio.Transport) -> None:
        self._refused = True
        self.transport = transport
        transport.write(self.refusal)
        if type(self).lingering >= _MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        type(self).lingering += 1
        self._lingers = True
        transport.write_eof()
        self._deadline = self.loop.call_later(_REFUSED_LINGER_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._disarm_once_headers_are_in()

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()
            self._disarm_once_headers_are_in()  # a pipelined request may have been taken already

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.limits.body_idle_timeout_s, self._reader_too_slow)

    def resume_writing(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        super().resume_writing()

    def _reader_too_slow(self) -> None:
        self._stalled = None
        log.debug("cutting off a client that read nothing of its answer for %g s", self.limits.body_idle_timeout_s)
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        if self._lingers:
            self._lingers = False
            type(self).lingering -= 1
        if self._refused:
            return
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _disarm_once_headers_are_in(self) -> None:
        # h11 leaves IDLE only when a request's complete headers have been parsed.
        if self._deadline is not None and self.conn.their_state is not h11.IDLE:
            self._disarm()

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("closing a connection that sent no complete request headers within %g s",
                      self.limits.header_timeout_s)
            self.transport.abort()


def loopback_listen(listen: str, refusal: str) -> tuple[str, int]:
    """(host, port) of a loopback ``HOST:PORT``; off loopback, InvalidArgument "refusing to serve ``refusal``"
    (which names the API and says what would cross the network readable)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidArgument(f"--listen must be HOST:PORT, got {listen!r}")
    host = host.strip("[]")
    if not is_loopback(host):
        raise InvalidArgument(f"refusing to serve {refusal.format(listen=listen)}")
    return host, int(port)


def _refusal(limits: HttpLimits, problem: Problem) -> bytes:
    body = problem(503, f"the server holds {limits.max_connections} connections already; retry in "
                        f"{limits.retry_after_s} s", "unavailable")
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"retry-after: {limits.retry_after_s}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def fit_descriptors(limits: HttpLimits) -> HttpLimits:
    """``limits`` with ``max_connections`` that fit the descriptor limit, raised (soft up to hard) if need be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.max_connections + _RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fits = max(16, soft - _RESERVED_FDS)
        log.warning("only %d descriptors may be open (ulimit -n); serving at most %d connections, not %d",
                    soft, fits, limits.max_connections)
        return dataclasses.replace(limits, max_connections=fits)
    return limits


def _guarded_config(app: AsgiApp, address: str, port: int, limits: HttpLimits, *, authorized: Authorized,
                    problem: Problem, unauthorized: str, embedded: bool) -> uvicorn.Config:
    limits = fit_descriptors(limits)
    # Each admitted request is a server span while tracing is on (an incoming traceparent its parent).
    guarded = Guard(telemetry.asgi_spans(app), limits, authorized, problem, unauthorized=unauthorized)
    protocol = type("GuardedH11", (_GuardedH11,), {"limits": limits, "refusal": _refusal(limits, problem)})
    # The backlog is also how many connections asyncio accepts in one go: nginx's 511 keeps a burst of
    # connects beyond the cap from holding many more descriptors before each is refused.
    # Embedded, the process's logging is its owner's: uvicorn's dictConfig is not applied.
    extra: dict[str, Any] = {"log_config": None, "timeout_graceful_shutdown": 3} if embedded else {
        "timeout_graceful_shutdown": 5}
    # asyncio's own loop, which the limits above are built on and tested with (uvicorn would take uvloop,
    # a dependency of worldrt.loops, once it is installed).
    return uvicorn.Config(guarded, host=address, port=port, http=protocol, ws="none", lifespan="off", loop="asyncio",
                          log_level="warning", access_log=False, timeout_keep_alive=limits.keep_alive_s,
                          h11_max_incomplete_event_size=_MAX_HEADER_BYTES, backlog=min(limits.max_connections, 511),
                          **extra)


def serve_guarded(app: AsgiApp, address: str, port: int, limits: HttpLimits, *, authorized: Authorized,
                  problem: Problem, unauthorized: str) -> None:
    """Serve ``app`` behind ``Guard`` on ``address:port`` under ``limits`` until SIGTERM or SIGINT: the one way
    a compatible API is served, so none can be served without the key check and the bounds."""
    uvicorn.Server(_guarded_config(app, address, port, limits, authorized=authorized, problem=problem,
                                   unauthorized=unauthorized, embedded=False)).run()


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the loop's owner has its own handlers: uvicorn's would replace them


class GuardedListener:
    """A guarded server running as a task of the current loop: its ``port``, its open ``connections``,
    and ``close()``, which stops it (answers still going out get a few seconds, then are cut)."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], port: int) -> None:
        self._server, self._task, self.port = server, task, port

    @property
    def connections(self) -> int:
        return len(self._server.server_state.connections)

    async def close(self) -> None:
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._task), 10)
        if not self._task.done():
            self._task.cancel()


async def start_guarded(app: AsgiApp, address: str, limits: HttpLimits, *, authorized: Authorized,
                        problem: Problem, unauthorized: str) -> GuardedListener:
    """Serve ``app`` behind ``Guard`` under ``limits`` on an ephemeral port of loopback ``address``, as a task
    of the running loop, until ``close()``; an address off loopback is refused (the server speaks plain HTTP)."""
    if not is_loopback(address):
        raise InvalidArgument(f"refusing to serve on {address}: it is plain HTTP; listen on loopback")
    config = _guarded_config(app, address, 0, limits, authorized=authorized, problem=problem,
                             unauthorized=unauthorized, embedded=True)
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((address, 0))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"could not listen on {address}: {exc}") from None
    server = _EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    listener = GuardedListener(server, task, sock.getsockname()[1])
    for _ in range(1000):  # startup is one create_server on a bound socket: at most a few ticks
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        await listener.close()
        sock.close()
        raise Unavailable(f"the server on {address} did not start")
    return listener
