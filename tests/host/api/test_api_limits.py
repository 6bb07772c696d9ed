"""`worldrt api serve morph` under attack, with raw sockets and httpx against the real server (issue 18,
findings 7, 8 and the API half of 9): the key is checked before a body is read, bodies are capped, slow
headers are cut, connections are capped, the schema needs the key, and a flood of long execs on one instance
slows only that instance."""

from __future__ import annotations

import json
import selectors
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from morphcloud.api import MorphCloudClient

from tests.support import HostProcess, MorphApiServer, wait_for

pytestmark = pytest.mark.daemons

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path_factory.mktemp("api-limits-host"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(host: HostProcess) -> Iterator[MorphApiServer]:
    api = MorphApiServer(host.home, host=host.address)
    yield api
    assert api.stop() in (0, 130)
    assert "Traceback" not in api.log(), api.log()[-4000:]


@pytest.fixture(scope="module")
def client(server: MorphApiServer) -> MorphCloudClient:
    return server.client()


def rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmRSS for {pid}")


def head(server: MorphApiServer, method: str, path: str, *lines: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n" + "".join(f"{h}\r\n" for h in lines)
            + "\r\n").encode()


def answer_while_sending(server: MorphApiServer, request: bytes, body: Iterator[bytes], wait_s: float = 60
                         ) -> tuple[int, dict[str, Any], int]:
    """Send ``request`` then ``body`` (on a thread, until the server stops taking it) while reading the
    answer; (status, JSON body, bytes of body sent). Nothing of the body is ever held here."""
    sent = 0
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)

        def pump() -> None:
            nonlocal sent
            try:
                for piece in body:
                    if stop.is_set():
                        return
                    sock.sendall(piece)
                    sent += len(piece)
            except OSError:
                pass  # the server closed the connection: what it does with the rest of a refused body

        sender = threading.Thread(target=pump, daemon=True)
        sender.start()
        sock.settimeout(wait_s)
        got = b""
        try:
            while b"\r\n\r\n" not in got or len(got) < _full_length(got):
                piece = sock.recv(65536)
                if not piece:
                    break
                got += piece
        except (TimeoutError, ConnectionResetError):
            pass  # judged below by what had arrived
        finally:
            stop.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)  # ends the sender's last sendall
        except OSError:
            pass  # the server has reset the connection already
        sender.join(30)
    assert got.startswith(b"HTTP/1.1 "), f"no answer within {wait_s} s ({sent >> 20} MiB of the body sent): {got!r}"
    status = int(got.split(b" ", 2)[1])
    payload = got.partition(b"\r\n\r\n")[2]
    return status, json.loads(payload) if payload else {}, sent


def _full_length(got: bytes) -> int:
    headers, sep, _ = got.partition(b"\r\n\r\n")
    for line in headers.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(headers) + len(sep) + int(value)
    return len(got)


def zeros(total: int, *, chunked: bool) -> Iterator[bytes]:
    piece = b"0" * MIB
    framed = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    for _ in range(total // MIB):
        yield framed
    if chunked:
        yield b"0\r\n\r\n"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_unauthenticated_gigabyte_is_401_before_its_body_is_read(server: MorphApiServer, chunked: bool) -> None:
    before = rss_mib(server.proc.pid)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {GIB}"
    status, body, sent = answer_while_sending(
        server, head(server, "POST", "/api/instance/i-x/exec", "Content-Type: application/json", framing),
        zeros(GIB, chunked=chunked))
    assert (status, body.get("error_code")) == (401, "unauthorized"), (status, body)
    assert sent < GIB
    assert rss_mib(server.proc.pid) < before + 64, "the refused body was held in memory"
    assert httpx.get(f"{server.base_url}/instance", headers={"Authorization": f"Bearer {server.key}"}).status_code == 200


def test_a_body_over_the_cap_is_413(server: MorphApiServer) -> None:
    auth = f"Authorization: Bearer {server.key}"
    path = "/api/instance/i-x/exec"
    # Said to be too large: answered from the headers, nothing of the body read.
    status, body, _ = answer_while_sending(
        server, head(server, "POST", path, auth, "Content-Type: application/json", f"Content-Length: {GIB}"),
        iter(()))
    assert (status, body.get("error_code")) == (413, "payload_too_large"), (status, body)
    assert "4194304 bytes" in body["detail"]
    # Streamed without a length: cut as soon as it passes the cap.
    before = rss_mib(server.proc.pid)
    status, body, sent = answer_while_sending(
        server, head(server, "POST", path, auth, "Content-Type: application/json", "Transfer-Encoding: chunked"),
        zeros(GIB, chunked=True))
    assert (status, body.get("error_code")) == (413, "payload_too_large"), (status, body)
    assert sent < GIB and rss_mib(server.proc.pid) < before + 64
    # A body within the cap is read as before.
    small = httpx.post(f"{server.base_url}/instance/i-x/exec", json={"command": ["true"]},
                       headers={"Authorization": f"Bearer {server.key}"})
    assert small.status_code == 404


def test_the_schema_and_the_docs_need_the_key(server: MorphApiServer) -> None:
    for path in ("/openapi.json", "/docs"):
        bare = httpx.get(f"{server.base_url}{path}")
        assert bare.status_code == 401 and bare.json()["error_code"] == "unauthorized", path
        keyed = httpx.get(f"{server.base_url}{path}", headers={"Authorization": f"Bearer {server.key}"})
        assert keyed.status_code == 200, path
    assert "/api/instance/{instance_id}/exec" in httpx.get(
        f"{server.base_url}/openapi.json", headers={"Authorization": f"Bearer {server.key}"}).json()["paths"]


def test_slow_headers_are_cut_and_others_are_served_meanwhile(server: MorphApiServer) -> None:
    """2,000 connections trickle their headers a byte a second: each is closed once the header deadline
    (10 s by default) has passed, and a normal request is answered all the while."""
    slow: list[socket.socket] = []
    chooser = selectors.DefaultSelector()
    try:
        for _ in range(2000):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /api/instance HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            slow.append(sock)
            chooser.register(sock, selectors.EVENT_READ)
        served = httpx.get(f"{server.base_url}/instance", headers={"Authorization": f"Bearer {server.key}"},
                           timeout=30)
        assert served.status_code == 200
        closed: set[socket.socket] = set()

        def all_closed() -> bool:
            for sock in slow:
                if sock not in closed:
                    try:
                        sock.send(b"X")  # one more byte of a header name: data must not hold the deadline off
                    except OSError:
                        pass
            for key, _ in chooser.select(timeout=1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed.add(sock)
                    chooser.unregister(sock)
            return len(closed) == len(slow)

        wait_for(all_closed, 60, "the server closes every connection that never finished its headers",
                 interval_s=0.5)
        again = httpx.get(f"{server.base_url}/instance", headers={"Authorization": f"Bearer {server.key}"})
        assert again.status_code == 200
    finally:
        chooser.close()
        for sock in slow:
            sock.close()


def test_connections_beyond_the_cap_get_503_at_once(host: HostProcess) -> None:
    capped = MorphApiServer(host.home, host=host.address, args=("--max-connections", "20"))
    held: list[socket.socket] = []
    try:
        def refused() -> bytes | None:
            sock = socket.create_connection(("127.0.0.1", capped.port))
            held.append(sock)
            sock.settimeout(0.2)
            try:
                return sock.recv(4096) or None
            except TimeoutError:
                return None

        answer = wait_for(refused, 30, "a connection beyond the cap is answered at once", interval_s=0)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer.lower(), answer
        assert len(held) >= 20
        for sock in held:
            sock.close()
        wait_for(lambda: httpx.get(f"{capped.base_url}/instance", headers={"Authorization": f"Bearer {capped.key}"}
                                   ).status_code == 200, 30, "the server serves again once the connections are gone")
    finally:
        for sock in held:
            sock.close()
        assert capped.stop() in (0, 130)
    assert "Traceback" not in capped.log(), capped.log()[-4000:]


def test_a_flood_of_long_execs_on_one_instance_slows_only_that_instance(server: MorphApiServer,
                                                                       client: MorphCloudClient) -> None:
    """60 execs of `sleep 120` on one instance (more than the 40 threads of the server's shared pool): the
    excess is refused at once (429), and another instance's exec and GET /instance are answered meanwhile."""
    busy = client.instances.start(client.snapshots.create().id)
    other = client.instances.start(client.snapshots.create().id)
    keyed = {"Authorization": f"Bearer {server.key}"}
    statuses: list[int] = []

    def flood_one(http: httpx.Client) -> None:
        try:
            statuses.append(http.post(f"{server.base_url}/instance/{busy.id}/exec", json={"command": ["sleep 120"]},
                                      timeout=180).status_code)
        except httpx.HTTPError:
            statuses.append(-1)

    with httpx.Client(headers=keyed, limits=httpx.Limits(max_connections=100)) as http, \
            ThreadPoolExecutor(60) as pool:
        try:
            for _ in range(60):
                pool.submit(flood_one, http)
            wait_for(lambda: statuses.count(429) >= 60 - 4 - 16, 60,
                     "the execs beyond an instance's turns and queue are refused at once")
            listed = httpx.get(f"{server.base_url}/instance", headers=keyed, timeout=60)
            assert listed.status_code == 200 and busy.id in {i["id"] for i in listed.json()["data"]}
            assert other.exec("echo other").stdout == "other\n"
            assert len(statuses) < 60, "the flood's admitted execs were still running meanwhile"
            refusal = http.post(f"{server.base_url}/instance/{busy.id}/exec", json={"command": ["true"]})
            assert refusal.status_code == 429 and refusal.headers["retry-after"] == "1"
            assert busy.id in refusal.json()["detail"]
        finally:
            stopped = http.delete(f"{server.base_url}/instance/{busy.id}", timeout=60)  # never queued behind its execs
            assert stopped.status_code == 200, stopped.text
    wait_for(lambda: len(statuses) == 60, 60, "every exec of the flood is answered once its instance is stopped")
    assert -1 not in statuses and statuses.count(429) >= 40, statuses
    other.stop()
