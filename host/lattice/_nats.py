"""A connection to the lattice: NATS options from flags or the environment, and one client on its own
event-loop thread that the host's (threaded, blocking) code calls into.

Credentials never travel on a command line: an identity's nkey credential (``WORLDRT_LATTICE_CREDS``,
host/lattice/_creds.py), or the older single token or password (``WORLDRT_LATTICE_TOKEN``,
``WORLDRT_LATTICE_PASSWORD``), comes from the environment or from a file only its owner reads. A
client never sends a credential in cleartext off loopback: off this machine it needs ``tls://`` (and
then it starts TLS before it reads a byte from the server, so a server that offers no TLS gets
nothing). With a credential, every inbox of the connection is ``_INBOX_{identity}.``: the only
subjects its identity may subscribe to. A wrong credential, an unreachable server or a TLS mismatch is
one ``LatticeError`` sentence; a permissions violation the server reports is logged and kept in
``Lattice.violations``.
"""

from __future__ import annotations

import asyncio
import logging
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
from nats.protocol.parser import AUTHORIZATION_VIOLATION, PERMISSIONS_ERR

from worldrt import loops
from worldrt.errors import (
    AlreadyExists,
    ErrorFamily,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from worldrt.host.lattice._creds import Credential, CredentialError, load_credential
from worldrt.providers import is_loopback

T = TypeVar("T")

LATTICE_ENV = "WORLDRT_LATTICE"
NAME_ENV = "WORLDRT_LATTICE_NAME"
TOKEN_ENV = "WORLDRT_LATTICE_TOKEN"
USER_ENV = "WORLDRT_LATTICE_USER"
PASSWORD_ENV = "WORLDRT_LATTICE_PASSWORD"
CREDS_ENV = "WORLDRT_LATTICE_CREDS"
CA_ENV = "WORLDRT_LATTICE_TLS_CA"
CERT_ENV = "WORLDRT_LATTICE_TLS_CERT"
KEY_ENV = "WORLDRT_LATTICE_TLS_KEY"
DEFAULT_NAME = "default"
# A lattice name and a host id are single NATS subject tokens and parts of bucket names.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# How soon the client notices a dead server connection (the server's own pings find a dead client).
PING_INTERVAL_S = 2
MAX_OUTSTANDING_PINGS = 2
log = logging.getLogger("worldrt.lattice")


class _QuietTlsEof(logging.Filter):
    """asyncio warns at every close of a TLS connection made by nats-py (its protocol keeps the transport
    open on EOF); the warning says nothing a user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietTlsEof())


class LatticeError(ErrorFamily):
    """The lattice cannot be reached or used; the message says what to change. Each member is also the
    kind its status says, so a refused credential is not "try again"."""


class LatticeDown(LatticeError, Unavailable):
    """No lattice answers, or it stopped answering."""


class LatticeRefused(LatticeError, Unauthenticated):
    """The lattice refused our credentials."""


class LatticeForbidden(LatticeError, PermissionDenied):
    """Our identity may not do this on the lattice."""


class LatticeConflict(LatticeError, AlreadyExists):
    """What we would claim on the lattice is another's."""


class LatticeConfigError(LatticeError, InvalidArgument):
    """The lattice options or files are wrong."""


def check_token(kind: str, value: str) -> str:
    if not _TOKEN.match(value):
        raise LatticeConfigError(f"{kind} {value!r} must be 1-64 letters, digits, '-' or '_' (it names NATS subjects)")
    return value


def _secret(path: str | None, env: str) -> str | None:
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise LatticeConfigError(f"cannot read {path}: {exc.strerror}") from None
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
    creds: Credential | None = None
    # A client certificate and key, for a server that requires one (lattice serve --tls-client-ca).
    tls_cert: str | None = None
    tls_key: str | None = None
    # Trust exactly this certificate, whatever name it has: ``lattice serve`` reaching its own server.
    tls_pin: str | None = None

    def __post_init__(self) -> None:
        check_token("lattice name", self.name)
        parts = urlsplit(self.url)
        if parts.scheme not in ("nats", "tls") or not parts.hostname or not parts.port:
            raise LatticeConfigError(f"--lattice {self.url!r} must look like nats://HOST:PORT or tls://HOST:PORT")
        if sum(map(bool, (self.token, self.user, self.creds))) > 1:
            raise LatticeConfigError("give the lattice one credential, not both: --lattice-creds FILE, a token, or a user and "
                               "password")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise LatticeConfigError("a lattice client certificate needs both --lattice-tls-cert and --lattice-tls-key")
        if self.creds is not None and self.creds.lattice != self.name:
            raise LatticeConfigError(f"the credential {self.creds.path} is for lattice {self.creds.lattice!r}, not "
                               f"{self.name!r}: pass --lattice-name {self.creds.lattice} or that lattice's credential")
        self.refuse_cleartext()

    @property
    def credential(self) -> str | None:
        """What kind of credential the connection presents (None: none)."""
        return "credential" if self.creds else "token" if self.token else "password" if self.user else None

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "tls" or bool(self.tls_ca or self.tls_pin)

    def refuse_cleartext(self) -> None:
        """Before anything is sent: no credential in cleartext to an address off this machine."""
        host = urlsplit(self.url).hostname or ""
        if self.credential and not self.tls and not is_loopback(host):
            raise LatticeConfigError(
                f"refusing to send the lattice's {self.credential} in cleartext to {self.url}: use "
                f"tls://{host}:{urlsplit(self.url).port} with --lattice-tls-ca (make certificates with: worldrt tls "
                f"init DIR --host NAME --ip ADDR)")

    @property
    def identity(self) -> str | None:
        """The identity the credential names (a host id, ``registry`` or ``admin``)."""
        return self.creds.name if self.creds else None

    @property
    def role(self) -> str | None:
        return self.creds.role if self.creds else None

    @classmethod
    def from_args(cls, url: str | None, name: str | None = None, *, token_file: str | None = None,
                  user: str | None = None, password_file: str | None = None,
                  tls_ca: str | None = None, creds_file: str | None = None, tls_cert: str | None = None,
                  tls_key: str | None = None) -> LatticeOptions | None:
        """The options the flags and the environment give; None when no lattice is named."""
        url = url or os.environ.get(LATTICE_ENV)
        if not url:
            return None
        user = user or os.environ.get(USER_ENV) or None
        creds_path = creds_file or os.environ.get(CREDS_ENV) or None
        try:
            creds = load_credential(creds_path) if creds_path else None
        except CredentialError as exc:
            raise LatticeConfigError(exc.message) from None
        name = name or os.environ.get(NAME_ENV) or (creds.lattice if creds else None) or DEFAULT_NAME
        return cls(url, name, token=_secret(token_file, TOKEN_ENV),
                   user=user, password=_secret(password_file, PASSWORD_ENV) if user else None,
                   tls_ca=tls_ca or os.environ.get(CA_ENV) or None, creds=creds,
                   tls_cert=tls_cert or os.environ.get(CERT_ENV) or None,
                   tls_key=tls_key or os.environ.get(KEY_ENV) or None)

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname and parts.port
        return parts.hostname, parts.port

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            if self.tls_pin:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.load_verify_locations(cafile=self.tls_pin)
                context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
                context.check_hostname = False  # the one certificate trusted is the name
            else:
                context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert and self.tls_key:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise LatticeConfigError(f"cannot use the lattice's TLS files ({self.tls_pin or self.tls_ca or 'system CAs'}, "
                               f"{self.tls_cert or 'no client certificate'}): {exc}") from None
        return context


def _wait_listening(host: str, port: int, timeout_s: float) -> None:
    """A plain TCP connect first: nats-py spends seconds on a port that is not listening yet."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise LatticeDown(f"no lattice answers at nats://{host}:{port} ({exc.strerror or exc}); start one with: "
                           f"worldrt lattice serve --listen {host}:{port}") from None


def _why(exc: BaseException, options: LatticeOptions) -> LatticeError:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, nats.errors.AuthorizationError) or AUTHORIZATION_VIOLATION in text.lower():
        return LatticeRefused(f"the lattice at {options.url} refused our credentials (authorization violation): give "
                              f"its token in {TOKEN_ENV} or --lattice-token-file, or its user and password")
    if isinstance(exc, ssl.SSLError) or "ssl" in text.lower() or "tls" in text.lower():
        return LatticeDown(f"TLS with the lattice at {options.url} failed ({text.splitlines()[0]}); give its CA with "
                           f"--lattice-tls-ca (the server must take the TLS handshake first, as worldrt lattice serve does)")
    return LatticeDown(f"cannot join the lattice at {options.url}: {text.splitlines()[0]}")


class Lattice:
    """One NATS connection on a private event loop thread. ``run`` calls a coroutine from any thread."""

    def __init__(self, options: LatticeOptions, *, client_name: str = "worldrt", connect_timeout_s: float = 5.0,
                 on_reconnect: Callable[[], Awaitable[None]] | None = None) -> None:
        self.options = options
        self.name = options.name
        self.loop = loops.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="lattice", daemon=True)
        self._thread.start()
        self._on_reconnect = on_reconnect
        # What the server refused this connection (subjects, lower-cased as the server reports them).
        self.violations: list[str] = []
        self.nc: Client
        self.js: JetStreamContext
        try:
            options.refuse_cleartext()
            _wait_listening(*options.address, timeout_s=connect_timeout_s)
            self.run(self._connect(client_name, connect_timeout_s), timeout_s=connect_timeout_s + 5)
        except BaseException:
            self._stop_loop()
            raise

    async def _connect(self, client_name: str, timeout_s: float) -> None:
        refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def error_cb(exc: BaseException) -> None:
            # NATS reports these as protocol text (-ERR 'Permissions Violation for ...'); its tokens are the
            # protocol's, as nats-py's own parser names them.
            text = str(exc).lower()
            if PERMISSIONS_ERR in text:
                self.violations.append(text)
                log.warning("the lattice refused %s: %s", self.options.identity or "this client", text)
                return
            hopeless = AUTHORIZATION_VIOLATION in text or "authentication" in text or isinstance(exc, ssl.SSLError) \
                or "certificate" in text
            if not refused.done() and hopeless:
                refused.set_result(exc)

        async def reconnected_cb() -> None:
            if self._on_reconnect is not None:
                await self._on_reconnect()

        o = self.options
        extra: dict[str, Any] = {}
        if o.creds is not None:
            extra.update(nkeys_seed_str=o.creds.seed, inbox_prefix=o.creds.inbox)
        tls = o.ssl_context()
        # A refused credential or certificate never gets better: stop the client's retries at the first one.
        # With TLS, the handshake comes first: a server (or someone in between) that offers no TLS never
        # sees a byte of ours in cleartext.
        joining = asyncio.ensure_future(nats.connect(
            o.url, name=client_name, token=o.token, user=o.user, password=o.password, tls=tls,
            tls_handshake_first=tls is not None,
            connect_timeout=int(max(1, timeout_s)), allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=1, ping_interval=PING_INTERVAL_S, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
            error_cb=error_cb, reconnected_cb=reconnected_cb, **extra))
        waiting: set[asyncio.Future[Any]] = {joining, refused}
        done, _ = await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if joining not in done:
            joining.cancel()
            await asyncio.gather(joining, return_exceptions=True)
            raise (_why(refused.result(), o) if refused.done() else
                   LatticeDown(f"cannot join the lattice at {o.url} within {timeout_s:.0f} s"))
        try:
            self.nc = joining.result()
        except Exception as exc:  # noqa: BLE001 - every failure to join is one sentence
            raise _why(refused.result() if refused.done() else exc, o) from None
        self.js = self.nc.jetstream()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = 30.0) -> T:
        """Run ``coro`` on the lattice's loop and wait for its result (from a thread that is not that loop)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise LatticeDown(f"the lattice at {self.options.url} did not answer within {timeout_s} s") from None

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
