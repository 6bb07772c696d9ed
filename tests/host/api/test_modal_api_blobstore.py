"""The Modal API's own bounded records and helpers, in this process: the blob store's HTTP/1.1 listener
(a real loopback listener, real HTTP) with its capability URLs, caps, expiry and timeouts; apps and named
secrets kept to their bounds, the least recently used forgotten; and the watch helper's lines read as
untrusted input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
from modal_proto import api_pb2

from worldrt.errors import InvalidArgument, NotFound, ResourceExhausted
from worldrt.host.api.modal._blobs import BlobStore
from worldrt.host.api.modal._records import MAX_SECRET_BYTES, Records, SandboxRecord
from worldrt.host.api.modal._watchhelper import MAX_LINE, BadLine, parse_error, parse_line

pytestmark = pytest.mark.pure

T = TypeVar("T")


def _http(url: str, method: str, body: bytes | None = None, headers: dict[str, str] | None = None,
          ) -> tuple[int, bytes, dict[str, str]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        conn.request(method, parts.path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read(), {k.lower(): v for k, v in answer.getheaders()}
    finally:
        conn.close()


def _with_store(test: Callable[[BlobStore], Awaitable[T]], **bounds: float) -> T:
    async def run() -> T:
        store = BlobStore(**bounds)  # type: ignore[arg-type]
        await store.start("127.0.0.1")
        try:
            return await test(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def _call(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.to_thread(fn, *args)


def test_a_blob_goes_up_and_down_once_byte_exact_behind_its_capabilities() -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()

    async def test(store: BlobStore) -> None:
        blob_id, up = store.create(len(data), md5)
        # A wrong capability, an unknown blob, the wrong direction: refused before any body is read.
        assert (await _call(_http, up[:-4] + "AAAA", "PUT", b"x"))[0] == 403
        assert (await _call(_http, up.replace(blob_id, "bl-unknown"), "PUT", b"x"))[0] == 404
        with pytest.raises(NotFound):
            store.download_url(blob_id)  # not uploaded yet
        status, _, headers = await _call(_http, up, "PUT", data, {"Content-MD5": md5})
        assert status == 200 and headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
        assert (await _call(_http, up, "PUT", data))[0] == 403  # an upload URL opens one upload
        down = store.download_url(blob_id)
        assert (await _call(_http, down[:-4] + "AAAA", "GET"))[0] == 403
        assert (await _call(_http, down, "PUT", b"x"))[0] == 405
        status, body, _ = await _call(_http, down, "GET")
        assert status == 200 and body == data
        # Downloaded in full: used, and deleted.
        assert (await _call(_http, down, "GET"))[0] == 404 and len(store) == 0
        with pytest.raises(NotFound):
            store.download_url(blob_id)

    _with_store(test)


def test_a_blob_past_its_caps_or_its_declared_length_is_refused() -> None:
    async def test(store: BlobStore) -> None:
        with pytest.raises(ResourceExhausted, match="above the 1048576 bytes"):
            store.create(1024 * 1024 + 1, "")
        _, up = store.create(1000, "")
        assert (await _call(_http, up, "PUT", b"x" * 1001))[0] == 413  # more than it was made for
        assert (await _call(_http, up, "PUT", b"x" * 999))[0] == 400
        status, body, _ = await _call(_http, up, "PUT", b"x" * 1000, {"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="})
        assert status == 400 and b"Content-MD5" in body  # refused, and it still awaits its upload
        assert (await _call(_http, up, "PUT", b"x" * 1000))[0] == 200
        store.create(1024 * 1024, "")
        store.create(1024 * 1024, "")
        with pytest.raises(ResourceExhausted, match="blob store holds 3 blobs"):
            store.create(1024 * 1024, "")  # past the total the store holds
        with pytest.raises(InvalidArgument):
            store.create(-1, "")

    _with_store(test, max_blob_bytes=1024 * 1024, max_total_bytes=3 * 1024 * 1024)


def test_blobs_expire_and_their_urls_answer_404() -> None:
    async def test(store: BlobStore) -> None:
        blob_id, up = store.create(10, "")
        assert (await _call(_http, up, "PUT", b"0123456789"))[0] == 200
        down = store.download_url(blob_id)
        deadline = time.monotonic() + 20
        while (await _call(_http, down, "GET"))[0] != 404:
            assert time.monotonic() < deadline, "the blob never expired"
            await asyncio.sleep(0.1)
        store.sweep()
        assert len(store) == 0

    _with_store(test, ttl_s=0.5)


def test_the_listener_bounds_connections_heads_and_idle_bodies() -> None:
    async def test(store: BlobStore) -> None:
        host, port = urlsplit(store.base_url).hostname, urlsplit(store.base_url).port
        held = [await asyncio.open_connection(host, port) for _ in range(2)]
        # Past the cap a connection is answered 503 and closed.
        reader, writer = await asyncio.open_connection(host, port)
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 503")
        writer.close()
        for _, w in held:
            w.close()
        deadline = time.monotonic() + 20
        while store.connections:
            assert time.monotonic() < deadline, "closed connections are still counted"
            await asyncio.sleep(0.05)
        # A body that stalls ends its connection with 408, and the blob still awaits its upload.
        _, up = store.create(100, "")
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"PUT {urlsplit(up).path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc".encode())
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(), 20)).startswith(b"HTTP/1.1 408")
        writer.close()
        assert (await _call(_http, up, "PUT", b"y" * 100))[0] == 200
        # A head larger than the cap is refused (400: uvicorn answers h11's oversized head so).
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 400")
        writer.close()

    _with_store(test, max_connections=2, idle_timeout_s=1.0)


def test_a_download_nobody_reads_is_cut_off_and_its_blob_kept() -> None:
    data = os.urandom(32 * 1024 * 1024)

    async def test(store: BlobStore) -> None:
        blob_id, up = store.create(len(data), "")
        assert (await _call(_http, up, "PUT", data))[0] == 200
        down = store.download_url(blob_id)
        host, port = urlsplit(down).hostname, urlsplit(down).port
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        _, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET {urlsplit(down).path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        # It reads nothing: past the idle timeout the listener cuts it off, and the blob is not used up.
        deadline = time.monotonic() + 30
        while store.connections:
            assert time.monotonic() < deadline, "a reader that reads nothing still holds its connection"
            await asyncio.sleep(0.1)
        writer.close()
        assert len(store) == 1
        status, body, _ = await _call(_http, store.download_url(blob_id), "GET")
        assert status == 200 and body == data and len(store) == 0

    _with_store(test, idle_timeout_s=1.0)


def _sandbox(app_id: str) -> SandboxRecord:
    return SandboxRecord(id=f"sb-{app_id}", task_id=f"ta-{app_id}V", instance_id="i", app_id=app_id, image_id="im",
                         name="", timeout_s=60, idle_timeout_s=0, env={}, workdir="/workspace")


def test_apps_are_bounded_and_an_app_with_a_running_sandbox_is_kept() -> None:
    records = Records(max_apps=3)
    busy = records.app("busy", True)
    records.add(_sandbox(busy))
    first = records.app("a", True)
    records.app("b", True)
    records.app("a", True)  # used again: the most recent
    records.app("c", True)  # one past the bound
    assert len(records.apps) == 3
    assert records.app("busy", False) == busy  # its sandbox runs: kept though least recently used
    assert records.app("a", False) == first
    with pytest.raises(NotFound):
        records.app("b", False)  # forgotten, the least recently used without a running sandbox
    with pytest.raises(InvalidArgument, match="at most 256 characters"):
        records.app("n" * 257, True)


def test_named_secrets_are_bounded_least_recently_used_first_and_each_capped() -> None:
    records = Records(max_secrets=2)
    one = records.put_secret("one", {"A": "1"}, False)
    records.put_secret("two", {"B": "2"}, False)
    assert records.secret("one") == one  # used: the most recent
    records.put_secret("three", {"C": "3"}, False)
    assert len(records.secrets) == 2 and records.secret_env(one) == {"A": "1"}
    with pytest.raises(NotFound):
        records.secret("two")
    with pytest.raises(InvalidArgument, match=f"at most {MAX_SECRET_BYTES} bytes"):
        records.put_secret("big", {"K": "v" * MAX_SECRET_BYTES}, False)
    assert "big" not in records.secrets
    assert api_pb2.GenericResult  # the records hold the SDK's own messages


@pytest.mark.parametrize("line", [
    b"not json", b"[]", b'{"event_type": "Create"}', b'{"event_type": "Explode", "paths": ["/tmp/a"]}',
    b'{"event_type": "Create", "paths": []}', b'{"event_type": "Create", "paths": ["relative"]}',
    b'{"event_type": "Create", "paths": ["/a", "/b", "/c"]}', b'{"event_type": "Create", "paths": [7]}',
    b'{"event_type": "Create", "paths": ["/tmp/a"], "more": 1}',
    json.dumps({"event_type": "Create", "paths": ["/" + "a" * MAX_LINE]}).encode(),
])
def test_a_watch_helper_line_that_is_not_an_event_is_refused(line: bytes) -> None:
    with pytest.raises(BadLine):
        parse_line(line)


def test_a_watch_helper_line_and_error_are_read_strictly() -> None:
    assert parse_line(b'{"event_type": "Rename", "paths": ["/tmp/a", "/tmp/b"]}') == ("Rename", ["/tmp/a", "/tmp/b"])
    assert parse_error(b'{"error_kind": "NotFound", "message": "gone"}') == ("NotFound", "gone")
    assert parse_error(b'{"error_kind": "Pwned", "message": "x"}')[0] == "Other"
    assert parse_error(b"\xff" * 100_000)[1].startswith("the watch helper")
