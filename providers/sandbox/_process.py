"""Daemon-side handle of one process inside a sandbox: its channel, read and written on the event loop.

The channel is a non-blocking unix socket. Frames (and the descriptors that ride on them) are read
with ``recvmsg`` when the loop says the socket is readable, so a call costs no thread hop.
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import signal
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

from . import _wire

ChannelClosed = _wire.ChannelClosed
_ANC_SPACE = socket.CMSG_SPACE(4 * 253)


class SandboxError(RuntimeError):
    """A process in a sandbox could not do what it was asked (its message says why)."""


class SandboxProcess:
    """One zygote, instance or snapshot process. One request at a time (callers serialize)."""

    def __init__(self, sock: socket.socket, pid: int, key: str) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.pid = pid
        self.key = key
        self._buf = bytearray()
        self._fds: list[int] = []
        self._creds: list[int] = []
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    async def from_hello(cls, fd: int, key: str) -> "SandboxProcess":
        """Adopt a channel to a freshly forked process and read its hello (which carries its pid)."""
        sock = socket.socket(fileno=fd)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        proc = cls(sock, 0, key)
        try:
            msg, fds = await proc.recv()
        except BaseException:
            proc.close()
            raise
        for extra in fds:
            os.close(extra)
        if not proc._creds or msg.get("hello") != key:
            proc.close()
            raise SandboxError(f"process for {key} sent no valid hello: {msg!r}")
        proc.pid = proc._creds[0]
        return proc

    async def _readable(self) -> None:
        if self.sock.fileno() < 0:
            raise ChannelClosed(f"channel of {self.key} is closed")
        loop = asyncio.get_running_loop()
        self._waiter = ready = loop.create_future()
        fd = self.sock.fileno()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            self._waiter = None
            loop.remove_reader(fd)

    def _fill(self) -> bool:
        """Read what the socket has; False when it would block."""
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(262144, _ANC_SPACE)
        except (BlockingIOError, InterruptedError):
            return False
        if not data:
            raise ChannelClosed(f"sandbox process of {self.key} closed its channel")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                self._fds.extend(fds)
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                self._creds = list(struct.unpack("3i", payload[:12]))
        self._buf += data
        return True

    async def recv(self) -> tuple[dict[str, Any], list[int]]:
        """The next frame and the descriptors that arrived with it. Safe to cancel while waiting."""
        while True:
            if len(self._buf) >= 4:
                (size,) = struct.unpack_from(">I", self._buf)
                if size > _wire.MAX_FRAME:
                    raise SandboxError(f"{self.key} sent a frame of {size} bytes")
                if len(self._buf) >= 4 + size:
                    body = bytes(self._buf[4:4 + size])
                    del self._buf[:4 + size]
                    fds, self._fds = self._fds, []
                    return json.loads(body), fds
            if not self._fill():
                await self._readable()

    async def send(self, msg: dict[str, Any]) -> None:
        data = memoryview(_wire.encode(msg))
        loop = asyncio.get_running_loop()
        while data:
            try:
                sent = self.sock.send(data)
                data = data[sent:]
            except (BlockingIOError, InterruptedError):
                writable = loop.create_future()
                loop.add_writer(self.sock.fileno(), lambda: writable.done() or writable.set_result(None))
                try:
                    await writable
                finally:
                    loop.remove_writer(self.sock.fileno())
            except OSError as exc:
                raise ChannelClosed(f"sandbox process of {self.key} is gone: {exc}") from exc

    async def request(self, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        await self.send(msg)
        reply, fds = await self.recv()
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise SandboxError(reply["error"])
        return reply, fds

    async def replies(self, msg: dict[str, Any]) -> AsyncIterator[tuple[dict[str, Any], list[int]]]:
        """Send one request and yield replies until one says it is the last (``more`` false)."""
        await self.send(msg)
        while True:
            reply, fds = await self.recv()
            yield reply, fds
            if not reply.get("more"):
                return

    def signal(self, signum: int) -> bool:
        try:
            os.kill(self.pid, signum)
            return True
        except ProcessLookupError:
            return False

    def kill_group(self) -> None:
        """SIGKILL the process and its process group (the fallback when no cgroup is available)."""
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        """Close the channel; a call waiting on it fails with ChannelClosed. Call on the event loop."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            waiter.set_exception(ChannelClosed(f"channel of {self.key} was closed"))
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self.sock.fileno() < 0:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
