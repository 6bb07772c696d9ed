"""The ASGI middleware in front of every compatible API: it decides on the request's headers alone, before
one byte of the body is read, and holds whatever it lets through to the bounds of ``HttpLimits``.

Invariants: a request without the key is answered 401 from its headers and its connection closed, its body
never received (nor its ``Expect: 100-continue`` answered); a body is never held beyond
``max_body_bytes``: a larger Content-Length is answered 413 at once, a streamed body is counted piece by
piece and cut (413) the moment it passes the cap; a body that stops coming for ``body_idle_timeout_s`` is
answered 408; more than ``max_in_flight`` requests at once are answered 503 with ``Retry-After``. Once the
guard has answered, the application sees the client as gone and whatever it still sends is dropped. Every
path needs the key, the API's schema and docs included.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from worldrt.host.api._limits import HttpLimits

log = logging.getLogger("worldrt.api.guard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
# (status, detail, error_code) -> the response body in the vendor's own error shape.
Problem = Callable[[int, str, str], bytes]
Authorized = Callable[[Headers], bool]

_DISCONNECT: Message = {"type": "http.disconnect"}


def bearer(key: str) -> Authorized:
    """Headers carrying exactly one ``Authorization: Bearer KEY``, compared in constant time."""
    expected = f"Bearer {key}".encode()

    def authorized(headers: Headers) -> bool:
        values = [value for name, value in headers if name == b"authorization"]
        return len(values) == 1 and hmac.compare_digest(values[0], expected)

    return authorized


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class Guard:
    """``Guard(app, limits, authorized, problem, unauthorized=…)``: ``app`` behind the key and the bounds."""

    def __init__(self, app: AsgiApp, limits: HttpLimits, authorized: Authorized, problem: Problem, *,
                 unauthorized: str) -> None:
        self.app, self.limits, self.authorized, self.problem = app, limits, authorized, problem
        self.unauthorized = unauthorized
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # no websocket route exists; the server is started without websocket support anyway
        exchange = _Exchange(self, scope, receive, send)
        refusal = self._refusal(scope["headers"])
        if refusal is not None:
            await exchange.answer(*refusal)
            return
        self.in_flight += 1
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if not exchange.answered:
                raise
            # The application failed reading a body the guard had cut: the client has its answer already.
            log.debug("%s %s failed after the guard answered", scope["method"], scope["path"], exc_info=True)
        finally:
            self.in_flight -= 1

    def _refusal(self, headers: Headers) -> tuple[int, str, str, int | None] | None:
        """(status, detail, error_code, Retry-After) when the headers alone settle it; None to let it in."""
        limits = self.limits
        if self.in_flight >= limits.max_in_flight:
            return (503, f"the server is answering {limits.max_in_flight} requests already; retry in "
                         f"{limits.retry_after_s} s", "unavailable", limits.retry_after_s)
        if not self.authorized(headers):
            return 401, self.unauthorized, "unauthorized", None
        length = _content_length(headers)
        if length is None:
            return 400, "Content-Length must be a decimal number of bytes", "bad_request", None
        if length > limits.max_body_bytes:
            return 413, _too_large(limits), "payload_too_large", None
        return None


def _content_length(headers: Headers) -> int | None:
    """The declared body length (0 when none is declared); None when it is not a number."""
    value = _header(headers, b"content-length")
    if value is None:
        return 0
    return int(value) if value.isdigit() else None


def _too_large(limits: HttpLimits) -> str:
    return f"the request body is larger than this server takes ({limits.max_body_bytes} bytes)"


class _Exchange:
    """One request: its body counted and timed as the application receives it, and the guard's answer."""

    def __init__(self, guard: Guard, scope: Scope, receive: Receive, send: Send) -> None:
        self.guard, self.scope, self._receive, self._send = guard, scope, receive, send
        headers = scope["headers"]
        self.body_done = _header(headers, b"transfer-encoding") is None and _content_length(headers) == 0
        self.received = 0
        self.started = False
        self.answered = False

    async def receive(self) -> Message:
        if self.answered:
            return _DISCONNECT
        if self.body_done:  # only the client's going away is left to hear of: no deadline on that
            return await self._receive()
        limits = self.guard.limits
        try:
            message = await asyncio.wait_for(self._receive(), limits.body_idle_timeout_s)
        except TimeoutError:
            await self.answer(408, f"the request body stopped coming for {limits.body_idle_timeout_s:g} s",
                              "request_timeout")
            return _DISCONNECT
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > limits.max_body_bytes:
                await self.answer(413, _too_large(limits), "payload_too_large")
                return _DISCONNECT
            self.body_done = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def answer(self, status: int, detail: str, error_code: str, retry_after_s: int | None = None) -> None:
        """The guard's own answer, and the connection closed after it (the rest of the body is never read)."""
        self.answered = True
        if self.started:
            return  # too late for a status: the application's answer is cut short instead
        body = self.guard.problem(status, detail, error_code)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        if retry_after_s is not None:
            headers.append((b"retry-after", str(retry_after_s).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
