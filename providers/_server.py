"""Run a provider as a daemon: grpc.aio server, health, reflection, auth, graceful stop on signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from worldrt.v1 import SERVICE_NAME, rpc

from ._auth import BearerTokenInterceptor
from ._provider import Provider
from ._servicer import ProviderServicer

log = logging.getLogger("worldrt.provider")


def listen_address(listen: str) -> str:
    """Validate ``unix:PATH`` or ``HOST:PORT`` and clear a stale unix socket file."""
    if listen.startswith("unix:"):
        path = Path(listen[5:])
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        return listen
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be unix:PATH or HOST:PORT, got {listen!r}")
    return listen


async def serve(provider: Provider, listen: str, token: str | None = None,
                ready: asyncio.Event | None = None) -> None:
    """Serve ``provider`` on ``listen`` until SIGTERM, SIGINT or a Shutdown call; stop its instances first."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="worldrt"))
    address = listen_address(listen)
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
    if server.add_insecure_port(address) == 0 and not address.startswith("unix:"):
        raise OSError(f"cannot listen on {address}")
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        await provider.open()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s serving on %s (pid %d)", provider.provider_id, address, os.getpid())
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
