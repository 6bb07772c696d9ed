"""The CLI's view of a host: a running one over gRPC, or an embedded one in this process.

A running host needs its bearer token: ``$WORLDRT_TOKEN``, else the file ``HOME/host.token`` that
``worldrt host serve`` made. A ``HOST:PORT`` host is reached over TLS with the settings given (or
WORLDRT_TLS_CA, WORLDRT_TLS_CERT, WORLDRT_TLS_KEY); a token is never sent to one in cleartext unless
it is on loopback.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import grpc
from google.protobuf.message import Message

from worldrt import telemetry
from worldrt.errors import Aborted, Reason, Unavailable, from_rpc_error
from worldrt.host._api import BY_NAME, EventSink, HostAPI
from worldrt.host._paths import default_db, default_home
from worldrt.providers import (
    TOKEN_ENV,
    ClientTls,
    open_channel,
    providers_for,
    read_token_file,
    refuse_cleartext_token,
    serving,
    tcp_host,
)
from worldrt.v1 import host_rpc

HOST_TOKEN_FILE = "host.token"
# How much longer a host that listens but did not answer at once gets before it is reported busy.
BUSY_WAIT_S = 10.0


class RemoteHost:
    """A host answering at ``address``, called through the Host API table; a failed call raises the
    error kind of its status with the host's sentence."""

    def __init__(self, address: str, token: str | None = None, tls: ClientTls | None = None) -> None:
        self.address = address
        self._channel = open_channel(address, tls=tls, token=token)
        self._md = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = host_rpc.HostStub(self._channel)

    @staticmethod
    def probe(address: str, tls: ClientTls | None = None, timeout_s: float = 1.0) -> str | None:
        """"serving" or "not serving" as the health of the host at ``address`` says; None if none answers."""
        answer = serving(address, timeout_s, tls=tls)
        return None if answer is None else "serving" if answer else "not serving"

    @staticmethod
    def answering(address: str, tls: ClientTls | None = None) -> bool:
        return serving(address, 1.0, tls=tls) is True

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = BY_NAME.get(name)
        if method is None:
            raise AttributeError(name)
        rpc = getattr(self._stub, method.rpc)
        where = f"host at {self.address}"

        def failure(exc: grpc.RpcError) -> Exception:
            # A refusal by the host's admission names the host already: it is not prefixed with it again.
            error = from_rpc_error(exc)
            return error if error.reason in (Reason.HOST_BUSY, Reason.INSTANCE_BUSY) else from_rpc_error(exc, where)

        def unary(request: Message) -> Any:
            try:
                return rpc(_absolute(request), metadata=(*self._md, *telemetry.carrier()))
            except grpc.RpcError as exc:
                raise failure(exc) from None

        def streamed(request: Message, on_event: EventSink | None = None) -> Any:
            assert method.result_of is not None
            call = rpc(_absolute(request), metadata=(*self._md, *telemetry.carrier()))
            try:
                for event in call:
                    result = method.result_of(event)
                    if result is not None:
                        return result
                    if on_event is not None:
                        on_event(event)
            except grpc.RpcError as exc:
                raise failure(exc) from None
            finally:
                call.cancel()  # an on_event that raised leaves the stream: the host hears it at once
            raise Aborted(f"{where} ended {name} without a result")

        unary.__name__ = streamed.__name__ = name  # what a client's span is named after
        return streamed if method.finish else unary

    def close(self) -> None:
        self._channel.close()


def _absolute(request: Message) -> Message:
    """Paths in a request mean this process's working directory, not the host's."""
    for field in ("path", "component_path"):
        if field in request.DESCRIPTOR.fields_by_name and getattr(request, field):
            setattr(request, field, str(Path(getattr(request, field)).resolve()))
    return request


def client_token(home: Path | None) -> str | None:
    """The token for a running host: ``$WORLDRT_TOKEN``, else ``HOME/host.token`` if it exists."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    path = (home or Path(".")) / HOST_TOKEN_FILE
    if not path.exists():
        return None
    return read_token_file(path)


def listening(address: str) -> bool:
    """Whether a live process listens on the unix socket of ``address`` (a stale socket file refuses)."""
    if not address.startswith("unix:"):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(address[5:])
        except (BlockingIOError, TimeoutError):
            return True  # its backlog is full: it is there, only slow to accept
        except OSError:
            return False
    return True


class Session:
    """``with Session(address) as host``: the running host at ``address`` if one answers, else an embedded one.

    Only the local host socket (``unix:``) falls back to an embedded host, and only when no process listens
    there: a host that is busy still holds the registry, so it gets ``BUSY_WAIT_S`` more to answer and is
    then reported busy, never replaced. A ``HOST:PORT`` that does not answer is an error, since the user
    asked for that host.

    An embedded host starts the providers named in ``start`` at once, side by side, while it loads (those the
    command is about to call); a running host starts its own as it needs them. ``warm`` is how many sandboxes
    each of an embedded host's sandbox providers (those that serve Start) keeps started ahead of a Start
    (None: the engine's default, 2 for morph and 4 for modal); a host that lives for one command needs few."""

    def __init__(self, address: str, db: Path | None, home: Path | None, *, token: str | None = None,
                 tls: ClientTls | None = None, start: Sequence[str] = (), warm: int | None = None) -> None:
        self.address, self.db, self.home = address, db, home
        self.token, self.tls = token, tls
        self.start = tuple(start)
        self.warm = warm
        self.api: HostAPI | None = None
        self.remote = False

    def __enter__(self) -> HostAPI:
        token = self.token or client_token(self.home)
        tcp = tcp_host(self.address) is not None
        refuse_cleartext_token(self.address, self.tls, token)  # before any packet, the health probe's too
        answer = RemoteHost.probe(self.address, self.tls)
        if answer is None and not tcp and listening(self.address):
            answer = RemoteHost.probe(self.address, self.tls, timeout_s=BUSY_WAIT_S)
            if answer is None:
                raise Unavailable(
                    f"the host at {self.address} is busy: it accepts connections but did not answer its health "
                    f"check within {BUSY_WAIT_S + 1:g} s; it holds the registry, so no embedded host can stand in "
                    f"for it: try again when its calls end, or look at its log", reason=Reason.HOST_BUSY)
        if answer is not None:
            self.api = cast(HostAPI, RemoteHost(self.address, token, self.tls))
            self.remote = True
        elif tcp:
            raise Unavailable(f"no host answers at {self.address}" + (
                "" if self.tls else " in cleartext (for a host with TLS, give its CA with --tls-ca)"))
        else:
            self.api = self._embed()
        return self.api

    def _embed(self) -> HostAPI:
        from worldrt.host._embedded import EarlyStart  # the registry's lock and the supervisor: not for a client

        db, home = self.db or default_db(), self.home or default_home()
        pools = {} if self.warm is None else {p: {"pool_size": str(self.warm)} for p in providers_for("start")}
        early = EarlyStart.begin(db, home, self.start, engine_options=pools)
        try:
            from worldrt.host._host import Host  # DuckDB, wasmtime, the lattice: only for an embedded host

            return Host(db, home, early=early)
        except BaseException:
            early.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.api is not None:
            self.api.close()
