"""Run a provider as a daemon: grpc.aio server, health, reflection, auth, TLS, graceful stop on signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from worldrt.errors import InvalidArgument, Unavailable
from worldrt.providers._auth import BearerTokenInterceptor
from worldrt.providers._channel import is_loopback, tcp_host
from worldrt.providers._provider import Provider
from worldrt.providers._servicer import ProviderServicer
from worldrt.v1 import SERVICE_NAME, rpc

log = logging.getLogger("worldrt.provider")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the TLS {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class ServerTls:
    """A TCP listener's certificate and key; with ``client_ca``, clients need a certificate it signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_args(cls, cert: str | None, key: str | None, client_ca: str | None) -> ServerTls | None:
        if not cert and not key:
            if client_ca:
                raise InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key as well")
            return None
        if not cert or not key:
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        return cls(Path(cert), Path(key), Path(client_ca) if client_ca else None)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(_read(self.key, "key"), _read(self.cert, "certificate"))],
            root_certificates=_read(self.client_ca, "client CA certificate") if self.client_ca else None,
            require_client_auth=self.client_ca is not None)


def listen_address(listen: str, *, tls: ServerTls | None = None, token: str | None = None,
                   insecure: bool = False) -> str:
    """Validate ``unix:PATH`` or ``HOST:PORT`` and clear a stale unix socket file.

    A TCP listener off loopback needs TLS; only a daemon without a token may serve it in cleartext, and
    only when asked to with ``insecure``."""
    if listen.startswith("unix:"):
        if tls is not None:
            raise InvalidArgument(f"TLS is for HOST:PORT listeners; {listen} is a unix socket, which its file mode "
                             f"protects: drop --tls-cert/--tls-key or listen on HOST:PORT")
        path = Path(listen[5:])
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        return listen
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgument(f"--listen must be unix:PATH or HOST:PORT, got {listen!r}")
    where = tcp_host(listen) or host
    if tls is None and not is_loopback(where):
        if token:
            raise InvalidArgument(f"refusing to listen on {listen} in cleartext: its bearer token would cross the "
                             f"network readable; pass --tls-cert and --tls-key (make them with: worldrt tls init "
                             f"DIR --host NAME); --insecure is only for a daemon without a token")
        if not insecure:
            raise InvalidArgument(f"refusing to listen on {listen} in cleartext: pass --tls-cert and --tls-key (make "
                             f"them with: worldrt tls init DIR --host NAME), or --insecure to serve it without "
                             f"TLS and without a token")
    return listen


def bind(server: grpc.Server | grpc.aio.Server, address: str, tls: ServerTls | None) -> int:
    """Add the listening port (TLS when ``tls`` is given); Unavailable when a TCP address cannot be bound."""
    try:
        port = (server.add_secure_port(address, tls.credentials()) if tls is not None
                else server.add_insecure_port(address))
    except RuntimeError as exc:  # grpc.aio raises where grpc returns 0
        raise Unavailable(f"cannot listen on {address} ({exc})") from None
    if port == 0 and not address.startswith("unix:"):
        raise Unavailable(f"cannot listen on {address}")
    return port


async def serve(provider: Provider, listen: str, token: str | None = None,
                ready: asyncio.Event | None = None, *, tls: ServerTls | None = None, insecure: bool = False) -> None:
    """Serve ``provider`` on ``listen`` until SIGTERM, SIGINT or a Shutdown call; stop its instances first."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="worldrt"))
    address = listen_address(listen, tls=tls, token=token, insecure=insecure)
    interceptors = [BearerTokenInterceptor(token)] if token else []
    server = grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
    ])
    stop = asyncio.Event()
    servicer = ProviderServicer(provider, stop.set)
    rpc.add_WorldRuntimeServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    bind(server, address, tls)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        # Opened before the socket answers: no call reaches a half-open provider, and health (whose
        # default for "" is SERVING) says SERVING only once the provider is.
        await provider.open()
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s serving on %s%s (pid %d)", provider.provider_id, address,
                 "" if tls is None else " with TLS" + (" (client certificates required)" if tls.client_ca else ""),
                 os.getpid())
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        stopped = await provider.close()
        log.info("%s stopping: %d instance(s) stopped", provider.provider_id, stopped)
        await server.stop(grace=1.0)
        if address.startswith("unix:"):
            Path(address[5:]).unlink(missing_ok=True)
