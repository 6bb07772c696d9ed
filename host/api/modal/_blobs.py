"""The blob store of the Modal-compatible API: what the SDK sends or fetches as a blob (payloads of 4 MiB or
more: ``BlobCreate`` then an HTTP PUT to the upload URL, ``BlobGet`` then an HTTP GET of the download URL)
is served by a small HTTP/1.1 listener on loopback that this server starts itself (gRPC's port is h2 only).

Invariants:
- A URL carries the blob's id and an unguessable capability (``secrets.token_urlsafe``, compared in
  constant time) for one direction: an upload URL opens one upload, a download URL downloads. A URL whose
  blob is unknown, ended or expired answers 404; a wrong capability 403; both before any body is read.
- A blob is at most ``max_blob_bytes`` (the sandbox daemon's default file cap): a larger one is refused at
  ``BlobCreate`` (RESOURCE_EXHAUSTED), and an upload is refused (413) unless its Content-Length is exactly
  the length declared at ``BlobCreate``. The store reserves that length up front: all blobs, uploaded or
  awaited, hold at most ``max_total_bytes`` and ``MAX_BLOBS`` blobs; past them ``BlobCreate`` is refused.
- A blob lives on disk (a private directory, removed at the end) until it is downloaded in full once, or
  ``ttl_s`` after its creation or upload: then it is deleted (swept every ``SWEEP_S``).
- The listener holds at most ``max_connections`` connections (one more is answered 503 and closed);
  a request's head must arrive within ``HEADER_TIMEOUT_S`` and be at most ``MAX_HEAD`` bytes; a body
  that stalls (or a reader that does not read) for ``IDLE_TIMEOUT_S`` ends the connection. Every answer
  closes its connection.
- An upload's ETag is the MD5 of the bytes received, as S3's, which the SDK checks; a ``Content-MD5``
  that does not match them is refused (400) and the blob stays awaiting its upload.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from worldrt.errors import InvalidArgument, NotFound, ResourceExhausted

MIB = 1024 * 1024
MAX_BLOB_BYTES = 256 * MIB
MAX_TOTAL_BYTES = 1024 * MIB
MAX_BLOBS = 256
TTL_S = 600.0
SWEEP_S = 5.0
MAX_CONNECTIONS = 16
HEADER_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0
MAX_HEAD = 16 * 1024
_CHUNK = MIB
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


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
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.unread = 0  # body bytes the client is still sending: read (and dropped) after the answer


class BlobStore:
    """The blobs and their listener. Everything runs on one event loop."""

    def __init__(self, *, max_blob_bytes: int = MAX_BLOB_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                 ttl_s: float = TTL_S, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.max_blob_bytes, self.max_total_bytes, self.ttl_s = max_blob_bytes, max_total_bytes, ttl_s
        self.max_connections, self.idle_timeout_s = max_connections, idle_timeout_s
        self._blobs: dict[str, Blob] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="worldrt-modal-blobs-"))
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._open = 0
        self.base_url = ""

    # the listener --------------------------------------------------------------------------------
    async def start(self, address: str) -> None:
        self._server = await asyncio.start_server(self._connection, address, 0, limit=MAX_HEAD)
        port = self._server.sockets[0].getsockname()[1]
        host = f"[{address}]" if ":" in address else address
        self.base_url = f"http://{host}:{port}"
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 3)
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
        return self._open

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

    # one connection: one request -------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > self.max_connections:
                await self._answer(writer, 503, f"the blob store serves {self.max_connections} connections at once: "
                                                f"retry")
                return
            try:
                await self._request(reader, writer)
            except _Answer as answer:
                await self._answer(writer, answer.status, answer.message)
                await self._drain(reader, answer.unread)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            raise _Answer(431, f"a request head is at most {MAX_HEAD} bytes") from None
        except asyncio.IncompleteReadError:
            return
        except TimeoutError:
            raise _Answer(408, f"the request head did not arrive within {HEADER_TIMEOUT_S:g} s") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Answer(400, "not an HTTP/1.1 request")
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise _Answer(400, "a header line without a colon")
                headers[name.strip().lower()] = value.strip()
        try:
            await self._route(method, target, headers, reader, writer)
        except _Answer as answer:
            if headers.get("content-length", "").isdigit():
                answer.unread = int(headers["content-length"])
            raise

    async def _route(self, method: str, target: str, headers: dict[str, str], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        path = target.split("?", 1)[0].split("/")
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
            await self._upload(blob, headers, reader, writer)
        else:
            if method not in ("GET", "HEAD"):
                raise _Answer(405, "a download URL takes GET")
            await self._download(blob, method, writer)

    async def _upload(self, blob: Blob, headers: dict[str, str], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        if blob.uploaded or blob.uploading:
            raise _Answer(403, "this blob is uploaded already: an upload URL opens one upload")
        if "transfer-encoding" in headers or "content-length" not in headers:
            raise _Answer(411, "an upload needs its Content-Length (chunked bodies are not taken)")
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _Answer(400, "Content-Length is not a number") from None
        if length != blob.length:
            raise _Answer(413 if length > blob.length else 400,
                          f"this blob was made for {blob.length} bytes; the upload says {length}")
        blob.uploading = True
        md5 = hashlib.md5()
        path = self._path(blob)
        try:
            with open(path, "wb") as out:
                left = length
                while left:
                    try:
                        data = await asyncio.wait_for(reader.read(min(_CHUNK, left)), self.idle_timeout_s)
                    except TimeoutError:
                        raise _Answer(408, f"the upload sent nothing for {self.idle_timeout_s:g} s") from None
                    if not data:
                        raise ConnectionError("the upload ended before its Content-Length")
                    md5.update(data)
                    out.write(data)
                    left -= len(data)
            sent_md5 = headers.get("content-md5")
            if sent_md5 is not None and not hmac.compare_digest(sent_md5, base64.b64encode(md5.digest()).decode()):
                raise _Answer(400, "The Content-MD5 you specified did not match what we received.")
            blob.uploaded = True
            blob.expires = time.monotonic() + self.ttl_s
        finally:
            blob.uploading = False
            if not blob.uploaded:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        await self._answer(writer, 200, "", etag=md5.hexdigest())

    async def _download(self, blob: Blob, method: str, writer: asyncio.StreamWriter) -> None:
        if not blob.uploaded:
            raise _Answer(404, "this blob has not been uploaded")
        blob.downloads += 1
        try:
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {blob.length}"
                    f"\r\nConnection: close\r\n\r\n")
            writer.write(head.encode("latin-1"))
            if method == "HEAD":
                await asyncio.wait_for(writer.drain(), self.idle_timeout_s)
                return
            with open(self._path(blob), "rb") as source:
                while data := source.read(_CHUNK):
                    writer.write(data)
                    await asyncio.wait_for(writer.drain(), self.idle_timeout_s)
        finally:
            blob.downloads -= 1
        self._delete(blob)  # sent in full: it has been used

    async def _drain(self, reader: asyncio.StreamReader, unread: int) -> None:
        """Read what the client still sends of a refused body (at most a blob's cap, each piece within the
        idle timeout), so that it reads the answer instead of a reset connection."""
        left = min(unread, self.max_blob_bytes)
        with contextlib.suppress(ConnectionError, TimeoutError):
            while left > 0:
                data = await asyncio.wait_for(reader.read(min(_CHUNK, left)), self.idle_timeout_s)
                if not data:
                    return
                left -= len(data)

    async def _answer(self, writer: asyncio.StreamWriter, status: int, message: str, etag: str = "") -> None:
        body = message.encode()
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        if etag:
            head += f'ETag: "{etag}"\r\n'
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode("latin-1") + body)
        await asyncio.wait_for(writer.drain(), self.idle_timeout_s)
