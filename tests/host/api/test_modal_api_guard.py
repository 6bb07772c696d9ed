"""Hostile clients of `worldrt api serve modal`: the token checked before a request is read, bodies capped,
unfinished connections closed, and one slow sandbox slowing only its own calls; the server keeps serving."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import grpc
import modal
import modal.client
import pytest
from google.protobuf import empty_pb2
from modal_proto import api_pb2, api_pb2_grpc

from tests.support import HostProcess, ModalApiServer, wait_for
from worldrt.host.api.modal._images import MAX_IMAGES

pytestmark = pytest.mark.daemons

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path_factory.mktemp("modal-guard-host"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(host: HostProcess) -> Iterator[ModalApiServer]:
    api = ModalApiServer(host.home, host=host.address,
                         args=("--max-body-bytes", str(MAX_BODY), "--header-timeout-s", "1"))
    yield api
    assert api.stop() in (0, 130)
    assert "Traceback" not in api.log(), api.log()[-4000:]


@pytest.fixture(scope="module")
def app(server: ModalApiServer) -> Iterator[modal.App]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.client_env().items():
            patch.setenv(name, value)
        modal.client._Client._client_from_env = None
        yield modal.App.lookup("worldrt-guard", create_if_missing=True)
        modal.client._Client._client_from_env = None


def _control(server: ModalApiServer) -> tuple[grpc.Channel, api_pb2_grpc.ModalClientStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[("grpc.max_send_message_length", -1)])
    return channel, api_pb2_grpc.ModalClientStub(channel)


def test_a_call_without_the_token_is_refused_unread(server: ModalApiServer) -> None:
    channel, control = _control(server)
    with channel:
        huge = api_pb2.AppGetOrCreateRequest(app_name="x" * (4 * MAX_BODY))
        with pytest.raises(grpc.RpcError) as refused:
            control.AppGetOrCreate(huge, metadata=[("x-modal-token-id", server.token[0]),
                                                   ("x-modal-token-secret", "wrong")])
        # The token decided it: the body (larger than the cap) was never read.
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_body_over_the_cap_is_refused_and_the_server_serves_on(server: ModalApiServer) -> None:
    channel, control = _control(server)
    pair = [("x-modal-token-id", server.token[0]), ("x-modal-token-secret", server.token[1])]
    with channel:
        with pytest.raises(grpc.RpcError) as refused:
            control.AppGetOrCreate(api_pb2.AppGetOrCreateRequest(app_name="x" * (2 * MAX_BODY)), metadata=pair)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert control.AppGetOrCreate(api_pb2.AppGetOrCreateRequest(
            app_name="fine", object_creation_type=api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING), metadata=pair).app_id


def test_a_connection_that_never_speaks_is_closed(server: ModalApiServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as silent:
        silent.settimeout(15)
        started = time.monotonic()
        while silent.recv(1024):  # the server's own SETTINGS, then its close: no preface came in time
            assert time.monotonic() - started < 15


def test_a_slow_sandbox_slows_only_its_own_calls(app: modal.App) -> None:
    slow = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
    other = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
    waiting: list[threading.Thread] = []
    try:
        # Far more waits on the slow sandbox than it is given turns for.
        procs = [slow.exec("sleep", "30") for _ in range(8)]
        for p in procs:
            thread = threading.Thread(target=lambda p=p: _quietly(p.wait), daemon=True)
            thread.start()
            waiting.append(thread)
        wait_for(lambda: all(t.is_alive() for t in waiting), 5, "the slow sandbox's waits are pending")
        p = other.exec("sh", "-c", "echo quick")
        assert p.stdout.read() == "quick\n" and p.wait() == 0
        assert all(t.is_alive() for t in waiting)  # the other sandbox answered while they still waited
    finally:
        slow.terminate()
        other.terminate()
    for thread in waiting:
        thread.join(60)


def _quietly(fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except Exception:  # noqa: BLE001 - the sandbox is terminated under it
        pass


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # and an empty SETTINGS


def _h2_connection(port: int) -> tuple[socket.socket, bool]:
    """A raw HTTP/2 connection that sent its preface; whether the server answered with its SETTINGS (else it
    closed the connection)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(15)
    try:
        sock.sendall(PREFACE)
        head = sock.recv(9)
    except (ConnectionResetError, BrokenPipeError):
        return sock, False
    return sock, len(head) == 9 and head[3] == 0x04


def test_connections_past_the_cap_are_closed_and_the_server_serves_on(host: HostProcess) -> None:
    cap = 3
    api = ModalApiServer(host.home, host=host.address, args=("--max-connections", str(cap)))
    held: list[socket.socket] = []
    try:
        pair = (("x-modal-token-id", api.token[0]), ("x-modal-token-secret", api.token[1]))
        with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:  # one connection of the cap
            hello = api_pb2_grpc.ModalClientStub(channel).ClientHello
            hello(empty_pb2.Empty(), metadata=pair, timeout=10)
            for _ in range(cap - 1):
                sock, answered = _h2_connection(api.port)
                held.append(sock)
                assert answered
            for _ in range(3):  # past the cap: each closed at once, never served
                sock, answered = _h2_connection(api.port)
                sock.close()
                assert not answered
            # The connections within the cap are served still.
            hello(empty_pb2.Empty(), metadata=pair, timeout=10)
        for sock in held:
            sock.close()
        held.clear()

        def served() -> bool:
            with grpc.insecure_channel(f"127.0.0.1:{api.port}") as fresh:
                try:
                    api_pb2_grpc.ModalClientStub(fresh).ClientHello(empty_pb2.Empty(), metadata=pair, timeout=5)
                    return True
                except grpc.RpcError:
                    return False

        # Once they are gone, a new connection is taken again.
        wait_for(served, 30, "a new connection is served once the held ones closed")
    finally:
        for sock in held:
            sock.close()
        assert api.stop() in (0, 130)


def test_image_records_are_bounded_and_keep_the_recently_used(server: ModalApiServer) -> None:
    pair = [("x-modal-token-id", server.token[0]), ("x-modal-token-secret", server.token[1])]
    channel, control = _control(server)
    with channel:
        def image(*commands: str) -> str:
            return str(control.ImageGetOrCreate(api_pb2.ImageGetOrCreateRequest(
                image=api_pb2.Image(dockerfile_commands=list(commands)), builder_version="2026.10"),
                metadata=pair).image_id)

        def known(image_id: str) -> bool:
            try:
                control.ImageFromId(api_pb2.ImageFromIdRequest(image_id=image_id), metadata=pair)
                return True
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
                return False

        default = image("FROM python:3.11-slim-trixie")
        # More refused recipes than the server keeps images (any client can make endless distinct ones).
        refused = []
        for n in range(MAX_IMAGES + 100):
            refused.append(image("FROM python:3.11-slim-trixie", f"RUN echo {n}"))
            if n % 100 == 0:
                assert known(default)  # used: kept
        assert not known(refused[0]) and not known(refused[99])
        assert known(refused[-1]) and known(default)
        # A forgotten recipe asked again is the same image again.
        assert image("FROM python:3.11-slim-trixie", "RUN echo 0") == refused[0] and known(refused[0])
