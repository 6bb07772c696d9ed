"""`worldrt api serve e2b` under hostile clients, with raw sockets and httpx against the real server: the key
or a sandbox's token is checked on the headers before any body is read, bodies are capped, unfinished
headers time out, and a flood on one sandbox slows only that sandbox."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("e2b")
pytest.importorskip("e2b_code_interpreter")

from e2b import Sandbox
from e2b_code_interpreter import Sandbox as Interpreter

from tests.support import HostProcess, read_head, wait_for
from tests.support.e2b_api import E2bApiServer

pytestmark = pytest.mark.daemons
QUEUED = 16  # HttpLimits.queued_per_instance (no flag: its default)
FLOOD = 40
# The server of this module (tests/host/api/e2b/conftest.py): short deadlines and small caps to hit.
SERVER_ARGS = ("--header-timeout-s", "1", "--max-body-bytes", "65536", "--calls-per-instance", "2")



def first_answer(server: E2bApiServer, request: bytes) -> bytes:
    """What the server answers to ``request`` (headers only: the declared body is never sent)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        return read_head(sock)


def test_no_key_is_401_before_a_gigabyte_body_is_read(server: E2bApiServer) -> None:
    got = first_answer(server, b"POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 1073741824\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 401"), got


def test_a_wrong_sandbox_token_is_401_before_the_body(server: E2bApiServer) -> None:
    sbx = Sandbox.create()
    try:
        got = first_answer(server, (f"POST /files?path=a.txt HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: {sbx.sandbox_id}\r\n"
                                    f"X-Access-Token: not-the-token\r\nContent-Length: 1073741824\r\n\r\n").encode())
        assert got.startswith(b"HTTP/1.1 401"), got
    finally:
        sbx.kill()


def test_a_body_over_the_cap_is_413(server: E2bApiServer) -> None:
    got = first_answer(server, (f"POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nX-API-KEY: {server.key}\r\n"
                                f"Content-Length: 70000\r\n\r\n").encode())
    assert got.startswith(b"HTTP/1.1 413"), got
    sbx = Sandbox.create()
    try:
        answer = httpx.post(f"{server.url}/files", params={"path": "big.bin"}, content=b"\0" * 70_000,
                            headers={"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token or "",
                                     "Content-Type": "application/octet-stream"})
        assert answer.status_code == 413
        assert not sbx.files.exists("/home/user/big.bin")
    finally:
        sbx.kill()


def test_unfinished_headers_are_cut(server: E2bApiServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/sandboxes HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 9  # closed by the 1 s header deadline, not by this socket's timeout


def test_a_flood_on_one_sandbox_slows_only_that_sandbox(host: HostProcess) -> None:
    # With `--calls-per-instance 1`, a cell that holds its sandbox's turn until the sandbox is killed (its
    # printed line says it has it) leaves room for QUEUED waiting calls: of FLOOD calls exactly QUEUED wait
    # and the rest are refused 429 at once, whatever order they arrive in. The other sandbox is answered
    # all along.
    narrow = E2bApiServer(host.home, host=host.address, args=("--calls-per-instance", "1"))
    try:
        with narrow.environment():
            flood_one_sandbox(narrow)
    finally:
        assert narrow.stop() in (0, 130)
    assert "Traceback" not in narrow.log(), narrow.log()[-4000:]


def flood_one_sandbox(server: E2bApiServer) -> None:
    busy, calm = Interpreter.create(), Sandbox.create()
    holding: list[str] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def hold() -> None:
        try:
            busy.run_code("import time\nprint('holding', flush=True)\ntime.sleep(280)",
                          on_stdout=lambda m: holding.append(m.line), timeout=400)
        except Exception:  # noqa: BLE001 - the cell ends when the test kills its sandbox
            pass

    def flood() -> None:
        with httpx.Client(timeout=120) as http:
            answer = http.get(f"{server.url}/files", params={"path": "none"},
                              headers={"E2b-Sandbox-Id": busy.sandbox_id,
                                       "X-Access-Token": busy._envd_access_token or ""})
        with lock:
            statuses.append(answer.status_code)

    holder = threading.Thread(target=hold)
    threads = [threading.Thread(target=flood) for _ in range(FLOOD)]
    try:
        holder.start()
        wait_for(lambda: holding, 60, "the cell holds its sandbox's turn")
        for thread in threads:
            thread.start()
        wait_for(lambda: statuses.count(429) == FLOOD - QUEUED, 60, "the calls over the bound are refused")
        assert calm.commands.run("echo calm").stdout == "calm\n"
        assert len(statuses) == FLOOD - QUEUED  # the QUEUED others still wait for the turn
    finally:
        busy.kill()  # the holding cell ends, and the waiting calls get their turn: the sandbox is gone
        for thread in [holder, *threads]:
            if thread.is_alive():
                thread.join(120)
        calm.kill()
    assert sorted(statuses) == [404] * QUEUED + [429] * (FLOOD - QUEUED), statuses
