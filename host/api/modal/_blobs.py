"""The blob store of the Modal-compatible API: what the SDK sends or fetches as a blob (payloads of 4 MiB or
more: ``BlobCreate`` then an HTTP PUT to the upload URL, ``BlobGet`` then an HTTP GET of the download URL)
is served over HTTP/1.1 on an ephemeral loopback port (gRPC's port is h2 only) by a small ASGI app run with
the stack every compatible API is served with (``start_guarded``: uvicorn behind ``Guard``, under
``HttpLimits``), as a task of the Modal server's own loop.

Invariants:
- A URL carries the blob's id and an unguessable capability (``secrets.token_urlsafe``, compared in
  constant time) for one direction: an upload URL opens one upload, a download URL downloads. A URL whose
  blob is unknown, ended or expired answers 404; a wrong capability 403; both before any body is read
  (what the client still sends of a refused body is then read and dropped, at most a blob's cap, so that
  it reads the answer rather than a reset connection). The guard has no key to check: the capability is it.
- A blob is at most ``max_blob_bytes`` (the sandbox daemon's default file cap): a larger one is refused at
  ``BlobCreate`` (RESOURCE_EXHAUSTED); a request declaring a larger body is refused (413) by the guard from
  its headers; an upload is refused (413 if longer, else 400) unless its Content-Length is exactly the
  length declared at ``BlobCreate`` (a chunked one, 411). The store reserves that length up front: all
  blobs, uploaded or awaited, hold at most ``max_total_bytes`` and ``MAX_BLOBS`` blobs; past them
  ``BlobCreate`` is refused.
- Bodies go to and from disk in pieces of at most ``_CHUNK`` (uvicorn hands an upload over in pieces of
  its read buffer): a blob is never held in memory.
- A blob lives on disk (a private directory, removed at the end) until it is downloaded in full once, or
  ``ttl_s`` after its creation or upload: then it is deleted (swept every ``SWEEP_S``). A download cut
  short leaves it in place.
- The listener holds at most ``max_connections`` connections (one more is answered 503 and closed);
  a request's head must arrive within ``HEADER_TIMEOUT_S`` (else the connection is closed) and be at most
  the stack's 16 KiB (else 400); a body that stalls for ``idle_timeout_s`` is answered 408, and a reader
  that reads nothing of a download for as long is cut off. Every answer closes its connection.
- An upload's ETag is the MD5 of the bytes received, as S3's, which the SDK checks; a ``Content-MD5``
  that does not match them is refused (400) and the blob stays awaiting its upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
import time
from base64 import b64encode
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worldrt.errors import InvalidArgument, NotFound, ResourceExhausted
from worldrt.host.api import GuardedListener, HttpLimits, start_guarded

MIB = 1024 * 1024
MAX_BLOB_BYTES = 256 * MIB
MAX_TOTAL_BYTES = 1024 * MIB
MAX_BLOBS = 256
TTL_S = 600.0
SWEEP_S = 5.0
MAX_CONNECTIONS = 16
HEADER_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0
_CHUNK = MIB

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Blob:
    id: str
    length: int
    upload_key: str
    download_key: str
    expires: float  # monotonic
    md5_b64: str
    uploaded: bool = False
    uploading: bool = False
    downloads: int = 0  # downloads being sent


class _Answer(Exception):
    def __init__(self, status: int, message: str, *, body_read: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.body_read = status, message, body_read


def _problem(status: int, detail: str, code: str) -> bytes:
    return json.dumps({"error": code or str(status), "message": detail}).encode()


def _anyone(headers: list[tuple[bytes, bytes]]) -> bool:
    return True  # the capability in the URL, checked per blob and direction, is the key


class BlobStore:
    """The blobs and their listener. Everything runs on one event loop."""

    def __init__(self, *, max_blob_bytes: int = MAX_BLOB_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                 ttl_s: float = TTL_S, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.max_blob_bytes, self.max_total_bytes, self.ttl_s = max_blob_bytes, max_total_bytes, ttl_s
        self.max_connections, self.idle_timeout_s = max_connections, idle_timeout_s
        self._blobs: dict[str, Blob] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="worldrt-modal-blobs-"))
        self._listener: GuardedListener | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.base_url = ""

    # the listener --------------------------------------------------------------------------------
    async def start(self, address: str) -> None:
        limits = HttpLimits(max_body_bytes=self.max_blob_bytes, header_timeout_s=HEADER_TIMEOUT_S,
                            body_idle_timeout_s=self.idle_timeout_s, max_connections=self.max_connections,
                            max_in_flight=self.max_connections)
        self._listener = await start_guarded(self._app, address, limits, authorized=_anyone, problem=_problem,
                                             unauthorized="")
        host = f"[{address}]" if ":" in address else address
        self.base_url = f"http://{host}:{self._listener.port}"
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._listener is not None:
            await self._listener.close()
        self._blobs.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    # what the gRPC calls ask -----------------------------------------------------------------------
    def create(self, length: int, md5_b64: str) -> tuple[str, str]:
        """(blob id, upload URL) of a new blob of ``length`` bytes."""
        self.sweep()
        if length < 0:
            raise InvalidArgument(f"a blob cannot have {length} bytes")
        if length > self.max_blob_bytes:
            raise ResourceExhausted(f"a blob of {length} bytes is above the {self.max_blob_bytes} bytes one may have "
                                    f"here (the sandbox's file size cap)")
        held = sum(b.length for b in self._blobs.values())
        if held + length > self.max_total_bytes or len(self._blobs) >= MAX_BLOBS:
            raise ResourceExhausted(f"the blob store holds {len(self._blobs)} blobs ({held} bytes) and takes at most "
                                    f"{MAX_BLOBS} ({self.max_total_bytes} bytes): retry once some are used or expire")
        blob = Blob(id=f"bl-{secrets.token_hex(12)}", length=length, upload_key=secrets.token_urlsafe(32),
                    download_key=secrets.token_urlsafe(32), expires=time.monotonic() + self.ttl_s, md5_b64=md5_b64)
        self._blobs[blob.id] = blob
        return blob.id, f"{self.base_url}/blobs/{blob.id}/up/{blob.upload_key}"

    def download_url(self, blob_id: str) -> str:
        self.sweep()
        blob = self._blobs.get(blob_id)
        if blob is None or not blob.uploaded:
            raise NotFound(f"blob {blob_id} not found: it was never uploaded, was downloaded already, or expired")
        return f"{self.base_url}/blobs/{blob.id}/down/{blob.download_key}"

    def __len__(self) -> int:
        return len(self._blobs)

    @property
    def connections(self) -> int:
        """Connections open now."""
        return self._listener.connections if self._listener is not None else 0

    def sweep(self) -> None:
        now = time.monotonic()
        for blob in [b for b in self._blobs.values() if b.expires <= now and not b.uploading and not b.downloads]:
            self._delete(blob)

    def _delete(self, blob: Blob) -> None:
        self._blobs.pop(blob.id, None)
        with contextlib.suppress(FileNotFoundError):
            self._path(blob).unlink()

    def _path(self, blob: Blob) -> Path:
        return self._dir / blob.id

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            self.sweep()

    # the ASGI app: one request per connection ------------------------------------------------------
    async def _app(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            await self._route(scope["method"], scope["path"], headers, receive, send)
        except _Answer as answer:
            await self._refuse(answer, headers, receive, send)

    async def _route(self, method: str, target: str, headers: dict[str, str], receive: Receive, send: Send) -> None:
        path = target.split("/")
        if len(path) != 5 or path[:2] != ["", "blobs"] or path[3] not in ("up", "down"):
            raise _Answer(404, "no such blob URL")
        blob = self._blobs.get(path[2])
        if blob is None or blob.expires <= time.monotonic():
            raise _Answer(404, "no such blob: it was never made, was downloaded already, or expired")
        key = blob.upload_key if path[3] == "up" else blob.download_key
        if not hmac.compare_digest(path[4].encode(), key.encode()):
            raise _Answer(403, "this URL's capability does not open this blob")
        if path[3] == "up":
            if method != "PUT":
                raise _Answer(405, "an upload URL takes PUT")
            await self._upload(blob, headers, receive, send)
        else:
            if method not in ("GET", "HEAD"):
                raise _Answer(405, "a download URL takes GET")
            await self._download(blob, method, receive, send)

    async def _upload(self, blob: Blob, headers: dict[str, str], receive: Receive, send: Send) -> None:
        if blob.uploaded or blob.uploading:
            raise _Answer(403, "this blob is uploaded already: an upload URL opens one upload")
        if "transfer-encoding" in headers or "content-length" not in headers:
            raise _Answer(411, "an upload needs its Content-Length (chunked bodies are not taken)")
        length = int(headers["content-length"])  # the guard has refused one that is not a number
        if length != blob.length:
            raise _Answer(413 if length > blob.length else 400,
                          f"this blob was made for {blob.length} bytes; the upload says {length}")
        blob.uploading = True
        md5, received, path = hashlib.md5(), 0, self._path(blob)
        try:
            with open(path, "wb") as out:
                more = length > 0
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went, or stalled and the guard answered 408: it awaits its upload
                    data = message.get("body", b"")
                    md5.update(data)
                    out.write(data)
                    received += len(data)
                    more = message.get("more_body", False)
            if received != length:
                return  # h11 frames the body by its Content-Length: not reached
            sent_md5 = headers.get("content-md5")
            if sent_md5 is not None and not hmac.compare_digest(sent_md5, b64encode(md5.digest()).decode()):
                raise _Answer(400, "The Content-MD5 you specified did not match what we received.", body_read=True)
            blob.uploaded = True
            blob.expires = time.monotonic() + self.ttl_s
        finally:
            blob.uploading = False
            if not blob.uploaded:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"etag", f'"{md5.hexdigest()}"'.encode()), (b"content-length", b"0"),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _download(self, blob: Blob, method: str, receive: Receive, send: Send) -> None:
        if not blob.uploaded:
            raise _Answer(404, "this blob has not been uploaded")
        gone = asyncio.Event()

        async def hear_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        blob.downloads += 1
        listening = asyncio.get_running_loop().create_task(hear_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream"),
                                    (b"content-length", str(blob.length).encode()), (b"connection", b"close")]})
            if method == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            with open(self._path(blob), "rb") as source:
                data = source.read(_CHUNK)
                while True:
                    following = source.read(_CHUNK) if data else b""
                    await asyncio.sleep(0)  # lets a disconnect be heard before the next piece
                    if gone.is_set():
                        return  # cut short (the client went, or read nothing for the idle timeout): kept
                    await send({"type": "http.response.body", "body": data, "more_body": bool(following)})
                    if not following:
                        break
                    data = following
        finally:
            listening.cancel()
            blob.downloads -= 1
        self._delete(blob)  # sent in full: it has been used

    async def _refuse(self, answer: _Answer, headers: dict[str, str], receive: Receive, send: Send) -> None:
        """Answer ``answer``, then read (and drop) what the client still sends of its body (at most a blob's
        cap, each piece within the idle timeout: the guard's bounds), so it reads the answer, not a reset."""
        body = _problem(answer.status, answer.message, "")
        declared = headers.get("content-length", "0")
        drain = not answer.body_read and "transfer-encoding" not in headers and declared.isdigit() and declared != "0"
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body, "more_body": drain})
        if drain:
            while (message := await receive())["type"] == "http.request" and message.get("more_body", False):
                pass
            await send({"type": "http.response.body", "body": b"", "more_body": False})
