"""A connection to the lattice: NATS options from flags or the environment, and one client on its own
event-loop thread that the host's (threaded, blocking) code calls into.

Credentials never travel on a command line: a token or a password comes from the environment
(``WORLDRT_LATTICE_TOKEN``, ``WORLDRT_LATTICE_PASSWORD``) or from a file only its owner reads. A wrong
credential, an unreachable server or a TLS mismatch is one ``LatticeError`` sentence.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from worldrt.errors import Unavailable

T = TypeVar("T")

LATTICE_ENV = "WORLDRT_LATTICE"
NAME_ENV = "WORLDRT_LATTICE_NAME"
TOKEN_ENV = "WORLDRT_LATTICE_TOKEN"
USER_ENV = "WORLDRT_LATTICE_USER"
PASSWORD_ENV = "WORLDRT_LATTICE_PASSWORD"
CA_ENV = "WORLDRT_LATTICE_TLS_CA"
DEFAULT_NAME = "default"
# A lattice name and a host id are single NATS subject tokens and parts of bucket names.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# How soon the client notices a dead server connection (the server's own pings find a dead client).
PING_INTERVAL_S = 2
MAX_OUTSTANDING_PINGS = 2


class LatticeError(Unavailable):
    """The lattice cannot be reached or used; the message says what to change."""


def check_token(kind: str, value: str) -> str:
    if not _TOKEN.match(value):
        raise LatticeError(f"{kind} {value!r} must be 1-64 letters, digits, '-' or '_' (it names NATS subjects)")
    return value


def _secret(path: str | None, env: str) -> str | None:
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise LatticeError(f"cannot read {path}: {exc.strerror}") from None
    return os.environ.get(env) or None


@dataclass(frozen=True)
class LatticeOptions:
    """Where the lattice is and how to log in to it."""

    url: str
    name: str = DEFAULT_NAME
    token: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None

    def __post_init__(self) -> None:
        check_token("lattice name", self.name)
        parts = urlsplit(self.url)
        if parts.scheme not in ("nats", "tls") or not parts.hostname or not parts.port:
            raise LatticeError(f"--lattice {self.url!r} must look like nats://HOST:PORT")
        if self.token and self.user:
            raise LatticeError("give the lattice a token or a user and password, not both")

    @classmethod
    def from_args(cls, url: str | None, name: str | None = None, *, token_file: str | None = None,
                  user: str | None = None, password_file: str | None = None,
                  tls_ca: str | None = None) -> LatticeOptions | None:
        """The options the flags and the environment give; None when no lattice is named."""
        url = url or os.environ.get(LATTICE_ENV)
        if not url:
            return None
        user = user or os.environ.get(USER_ENV) or None
        return cls(url, name or os.environ.get(NAME_ENV) or DEFAULT_NAME, token=_secret(token_file, TOKEN_ENV),
                   user=user, password=_secret(password_file, PASSWORD_ENV) if user else None,
                   tls_ca=tls_ca or os.environ.get(CA_ENV) or None)

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname and parts.port
        return parts.hostname, parts.port

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls_ca and urlsplit(self.url).scheme != "tls":
            return None
        return ssl.create_default_context(cafile=self.tls_ca) if self.tls_ca else ssl.create_default_context()


def _wait_listening(host: str, port: int, timeout_s: float) -> None:
    """A plain TCP connect first: nats-py spends seconds on a port that is not listening yet."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise LatticeError(f"no lattice answers at nats://{host}:{port} ({exc.strerror or exc}); start one with: "
                           f"worldrt lattice serve --listen {host}:{port}") from None


def _why(exc: BaseException, options: LatticeOptions) -> str:
    text = str(exc) or type(exc).__name__
    if "authorization" in text.lower() or isinstance(exc, nats.errors.AuthorizationError):
        return (f"the lattice at {options.url} refused our credentials (authorization violation): give its token "
                f"in {TOKEN_ENV} or --lattice-token-file, or its user and password")
    if isinstance(exc, ssl.SSLError) or "ssl" in text.lower() or "tls" in text.lower():
        return f"TLS with the lattice at {options.url} failed ({text.splitlines()[0]}); give its CA with --lattice-tls-ca"
    return f"cannot join the lattice at {options.url}: {text.splitlines()[0]}"


class Lattice:
    """One NATS connection on a private event loop thread. ``run`` calls a coroutine from any thread."""

    def __init__(self, options: LatticeOptions, *, client_name: str = "worldrt", connect_timeout_s: float = 5.0,
                 on_reconnect: Callable[[], Awaitable[None]] | None = None) -> None:
        self.options = options
        self.name = options.name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="lattice", daemon=True)
        self._thread.start()
        self._on_reconnect = on_reconnect
        self.nc: Client
        self.js: JetStreamContext
        try:
            _wait_listening(*options.address, timeout_s=connect_timeout_s)
            self.run(self._connect(client_name, connect_timeout_s), timeout_s=connect_timeout_s + 5)
        except BaseException:
            self._stop_loop()
            raise

    async def _connect(self, client_name: str, timeout_s: float) -> None:
        refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def error_cb(exc: BaseException) -> None:
            text = str(exc).lower()
            hopeless = "authorization" in text or "authentication" in text or isinstance(exc, ssl.SSLError) \
                or "certificate" in text
            if not refused.done() and hopeless:
                refused.set_result(exc)

        async def reconnected_cb() -> None:
            if self._on_reconnect is not None:
                await self._on_reconnect()

        o = self.options
        # A refused credential or certificate never gets better: stop the client's retries at the first one.
        joining = asyncio.ensure_future(nats.connect(
            o.url, name=client_name, token=o.token, user=o.user, password=o.password, tls=o.ssl_context(),
            connect_timeout=int(max(1, timeout_s)), allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=1, ping_interval=PING_INTERVAL_S, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
            error_cb=error_cb, reconnected_cb=reconnected_cb))
        waiting: set[asyncio.Future[Any]] = {joining, refused}
        done, _ = await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if joining not in done:
            joining.cancel()
            await asyncio.gather(joining, return_exceptions=True)
            raise LatticeError(_why(refused.result(), o) if refused.done() else
                               f"cannot join the lattice at {o.url} within {timeout_s:.0f} s")
        try:
            self.nc = joining.result()
        except Exception as exc:  # noqa: BLE001 - every failure to join is one sentence
            raise LatticeError(_why(refused.result() if refused.done() else exc, o)) from None
        self.js = self.nc.jetstream()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = 30.0) -> T:
        """Run ``coro`` on the lattice's loop and wait for its result (from a thread that is not that loop)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise LatticeError(f"the lattice at {self.options.url} did not answer within {timeout_s} s") from None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` on the loop without waiting for it."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    def close(self, drain: bool = True) -> None:
        async def shut() -> None:
            if self.nc.is_closed:
                return
            try:
                if drain:
                    await self.nc.drain()
                else:
                    await self.nc.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is closed either way
                await self.nc.close()

        try:
            self.run(shut(), timeout_s=35)
        except LatticeError:
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(5)
            except Exception:  # noqa: BLE001 - a task that will not stop is dropped with the loop
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()
