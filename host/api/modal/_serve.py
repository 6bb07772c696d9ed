"""Serving Modal's two gRPC services on one loopback h2c port until SIGTERM or SIGINT, through the host.

The server is grpcio's asyncio server with the servicer registrations of the ``modal`` wheel, behind the
gate (``_auth.Gate``: the token pair or the router's JWT, checked before a request is read) and the bounds
of ``HttpLimits``, as gRPC holds them:

- a request message larger than ``max_body_bytes`` is refused (RESOURCE_EXHAUSTED) by grpc itself;
- a connection that has not finished its HTTP/2 preface within ``header_timeout_s`` is closed
  (``grpc.server_handshake_timeout_ms``); one idle (no call) for ``IDLE_CONNECTION_S`` is sent GOAWAY;
- at most ``max_connections`` connections are held (``grpc.max_allowed_incoming_connections``: grpc closes
  one past it as it is accepted, before reading its preface; a test holds the cap with raw HTTP/2
  connections), at most
  ``MAX_STREAMS_PER_CONNECTION`` calls on one, and at most ``max_in_flight`` calls in all (one more is
  RESOURCE_EXHAUSTED at once);
- calls that wait on the host are admitted per sandbox (``Admission``): one slow sandbox slows only its
  own calls;
- blobs (payloads of 4 MiB or more) go over a second listener on the same loopback address, an ephemeral
  port, HTTP/1.1 (``_blobs.BlobStore``: an ASGI app on the shared uvicorn stack, ``start_guarded``, with
  its own bounds).

The SDK pings every 30 s; pings without calls are permitted so that its connections are not dropped.
On the way out every sandbox it started is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
import grpc.aio
from modal_proto import api_pb2_grpc, task_command_router_pb2_grpc

from worldrt import telemetry
from worldrt.errors import InvalidArgument, Unavailable
from worldrt.host import HostAPI
from worldrt.host.api import Admission, HttpLimits, loopback_listen
from worldrt.host.api.modal._auth import Gate, Tokens
from worldrt.host.api.modal._blobs import BlobStore
from worldrt.host.api.modal._calls import ModalApi
from worldrt.host.api.modal._control import ControlPlane
from worldrt.host.api.modal._images import Images
from worldrt.host.api.modal._processes import Processes
from worldrt.host.api.modal._records import Records
from worldrt.host.api.modal._router import Router
from worldrt.host.api.modal._sandboxes import Sandboxes

log = logging.getLogger("worldrt.api.modal")

DEFAULT_LISTEN = "127.0.0.1:8790"
IDLE_CONNECTION_S = 300
MAX_STREAMS_PER_CONNECTION = 256
# The largest message grpc may send (a stdio chunk is far smaller; the SDK takes up to 64 MiB).
_MAX_SEND_BYTES = 16 * 1024 * 1024


def parse_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a loopback ``HOST:PORT``: the API is plain h2c, so its token must not cross a network."""
    return loopback_listen(listen, "the Modal API on {listen}: it speaks plain gRPC (h2c), so its token would cross the "
                                   "network readable; listen on loopback (127.0.0.1)")


def profile(listen: str, token_id: str, token_secret: str, name: str = "worldrt") -> str:
    """A ``~/.modal.toml`` profile that points the modal SDK at this server (instead of environment variables)."""
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (f"[{name}]\nserver_url = {quoted(f'http://{listen}')}\ntoken_id = {quoted(token_id)}\n"
            f"token_secret = {quoted(token_secret)}\nactive = true\n")


def _options(limits: HttpLimits) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", limits.max_body_bytes),
        ("grpc.max_send_message_length", _MAX_SEND_BYTES),
        ("grpc.server_handshake_timeout_ms", int(limits.header_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", IDLE_CONNECTION_S * 1000),
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
    ]


async def _serve(api_parts: tuple[Images, Records, Sandboxes, Processes, Tokens], address: str, port: int,
                 limits: HttpLimits) -> None:
    images, records, sandboxes, processes, tokens = api_parts
    host_part = f"[{address}]" if ":" in address else address
    blobs = BlobStore()
    api = ModalApi(images, records, sandboxes, tokens, Admission(limits), f"http://{host_part}:{port}", blobs)
    server = grpc.aio.server(interceptors=[Gate(tokens), *telemetry.server_interceptors()], options=_options(limits),
                             maximum_concurrent_rpcs=limits.max_in_flight)
    api_pb2_grpc.add_ModalClientServicer_to_server(ControlPlane(api), server)  # type: ignore[arg-type]
    task_command_router_pb2_grpc.add_TaskCommandRouterServicer_to_server(Router(api, processes), server)  # type: ignore[arg-type]
    try:
        bound = server.add_insecure_port(f"{host_part}:{port}")
    except RuntimeError as exc:
        raise Unavailable(f"could not listen on {host_part}:{port} (address already in use?): {exc}") from None
    if port and bound != port:
        raise Unavailable(f"could not listen on {host_part}:{port}: address already in use")
    await server.start()
    await blobs.start(address)
    log.info("Modal-compatible API at http://%s:%d (MODAL_SERVER_URL); blobs at %s", host_part, bound, blobs.base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=3)
        await blobs.close()


def serve_modal_api(host: HostAPI, listen: str, token_id: str, token_secret: str, *,
                    limits: HttpLimits | None = None) -> int:
    """Serve Modal's API at ``http://LISTEN`` through ``host``; how many sandboxes were still running at exit."""
    if not token_id or not token_secret:
        raise InvalidArgument("the Modal API needs the token pair its clients send: MODAL_TOKEN_ID and "
                              "MODAL_TOKEN_SECRET in the server's environment")
    address, port = parse_listen(listen)
    limits = limits or HttpLimits()
    tokens = Tokens(token_id, token_secret)
    images, records = Images(host), Records()
    sandboxes = Sandboxes(host, images, records)
    processes = sandboxes.processes = Processes(sandboxes)
    sandboxes.link()
    sandboxes.start_expiry()
    try:
        asyncio.run(_serve((images, records, sandboxes, processes, tokens), address, port, limits))
    finally:
        stopped = sandboxes.close()
        log.info("Modal-compatible API stopped (%d running sandboxes stopped)", stopped)
    return stopped


