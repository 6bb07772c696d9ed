"""The protections every compatible API is served with (``serve_guarded``: the guard and the server), around a small ASGI
app of their own in a real server process, with short bounds: what the Morph API's tests cannot reach
with its default ones (a body that stops coming, a kept-alive connection trickling its next request, the
cap on requests in flight)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.support import free_port, read_head, wait_for

pytestmark = pytest.mark.daemons

_SERVER = """
import json, sys
from worldrt.host.api import HttpLimits, bearer, serve_guarded

async def app(scope, receive, send):
    if scope["path"] == "/hold":  # a long poll: answered never, over when its client goes
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"got": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

def problem(status, detail, code):
    return json.dumps({"detail": detail, "error_code": code}).encode()

limits = HttpLimits(header_timeout_s=1, body_idle_timeout_s=1, max_in_flight=2, max_body_bytes=1000, retry_after_s=3)
serve_guarded(app, "127.0.0.1", int(sys.argv[1]), limits, authorized=bearer("k"), problem=problem,
              unauthorized="send the key")
"""
KEY = {"Authorization": "Bearer k"}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    chosen = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(chosen)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def up() -> bool:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            return httpx.get(f"http://127.0.0.1:{chosen}/", headers=KEY, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 60, "the guarded server answers")
        yield chosen
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert "Traceback" not in output, output[-4000:]


def read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    return read_head(sock)


def test_a_body_that_stops_coming_is_408(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Length: 100\r\n\r\n0123456789")
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower(), answer


def test_a_kept_alive_connection_trickling_its_next_request_is_closed(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        sock.settimeout(0.3)

        def closed() -> bool:
            try:
                sock.sendall(b"G")  # a byte at a time: it must not hold the deadline off
                return sock.recv(4096) == b""
            except TimeoutError:
                return False
            except OSError:
                return True

        wait_for(closed, 30, "the server closes a connection whose next request's headers never end", interval_s=0)


def test_requests_beyond_the_in_flight_cap_get_503_with_retry_after(port: int) -> None:
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n")

        def refused() -> httpx.Response | None:
            answer = httpx.get(f"http://127.0.0.1:{port}/x", headers=KEY, timeout=30)
            return answer if answer.status_code == 503 else None

        answer = wait_for(refused, 30, "a request beyond the two in flight is refused")
        assert answer.headers["retry-after"] == "3" and answer.json()["error_code"] == "unavailable"
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/x", headers=KEY, timeout=30).status_code == 200, 30,
             "requests are served again once the held ones are gone")


def test_bad_lengths_and_missing_keys_are_refused_from_the_headers(port: int) -> None:
    assert httpx.post(f"http://127.0.0.1:{port}/x", content=b"a" * 1001, headers=KEY).status_code == 413
    assert httpx.post(f"http://127.0.0.1:{port}/x", content=b"a" * 1000, headers=KEY).json() == {"got": 1000}
    bare = httpx.get(f"http://127.0.0.1:{port}/x")
    assert bare.status_code == 401 and json.loads(bare.content) == {"detail": "send the key", "error_code": "unauthorized"}
    doubled = httpx.get(f"http://127.0.0.1:{port}/x", headers=[("Authorization", "Bearer k"), ("Authorization", "Bearer k")])
    assert doubled.status_code == 401
