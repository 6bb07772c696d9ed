"""Daemon-side handle of one process inside a sandbox: its channel, read and written on the event loop.

The channel is a non-blocking unix socket. Nothing the process sends is trusted: a frame is at most
``MAX_FRAME`` bytes and must decode to a JSON object (else ProtocolError); descriptors are accepted
only by a read that expects them, and only as many as it expects (the kernel discards the rest before
they reach this process); credentials are read once, from the hello.
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

from worldrt.errors import Aborted, ErrorFamily, Unavailable
from worldrt.providers.sandbox import _wire
from worldrt.providers.sandbox._readiness import ready

# The largest frame a sandboxed process may send: an output chunk or a result of at most 1 MiB of JSON.
MAX_FRAME = 4 * 1024 * 1024
_READ = 262144
# recv gives the event loop a turn after this much work without a wait (a frame counts 1, a read of the
# socket _FILL_WORK), so a sandbox that keeps its channel full never holds the loop from other tenants.
_YIELD_AFTER = 64
_FILL_WORK = 8
_CREDS_SPACE = socket.CMSG_SPACE(12)
_MSG_CMSG_CLOEXEC = 0x40000000


class SandboxFault(ErrorFamily):
    """The family of what goes wrong with a process in a sandbox, whatever its kind: catch this to catch
    them all (SandboxError, ChannelClosed, ProtocolError, ArchiveTooLarge, ...)."""


class SandboxError(SandboxFault, Unavailable):
    """A process in a sandbox could not do what it was asked (its message says why)."""


class ChannelClosed(SandboxError):
    """The process at the other end of a channel has gone (or the channel was closed here)."""


class ProtocolError(SandboxFault, Aborted):
    """A process in a sandbox sent something the protocol does not allow; it is not trusted further."""


class SandboxProcess:
    """One zygote, instance or snapshot process. One request at a time (callers serialize)."""

    def __init__(self, sock: socket.socket, pid: int, key: str, *, max_frame: int = MAX_FRAME) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_frame = max_frame
        self.pid = pid
        self.key = key
        self.hello: dict[str, Any] = {}
        self._buf = bytearray()
        self._fds: list[int] = []
        self._creds: list[int] = []
        self._passcred = False
        self._waiter: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        self._work = 0
        self._mid_frame = False
        # The channel stays watched between reads (one epoll registration, not two changes per read); a
        # watch that fires with nobody reading twice running is dropped, so unread input never spins the loop.
        self._watched: asyncio.AbstractEventLoop | None = None
        self._idle_fires = 0
        # False once a read found the socket drained: the next read waits for readiness instead of trying.
        self._maybe_more = True
        # A pidfd of the process (from_hello with hold_pid): signalled without a race on its pid's reuse.
        self.pidfd: int | None = None

    @classmethod
    async def from_hello(cls, fd: int, key: str, *, hold_pid: bool = False) -> SandboxProcess:
        """Adopt a channel to a freshly forked process and read its hello (which carries its pid); with
        ``hold_pid``, open a pidfd of it at once (``kill`` uses it)."""
        sock = socket.socket(fileno=fd)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        proc = cls(sock, 0, key)
        proc._passcred = True
        try:
            msg, _fds = await proc.recv()
            if not proc._creds or msg.get("hello") != key:
                raise ProtocolError(f"process for {key} sent no valid hello: {str(msg)[:200]}")
        except BaseException:
            proc.close()
            raise
        proc._passcred = False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
        proc.pid = proc._creds[0]
        proc.hello = msg
        if hold_pid:
            try:
                proc.pidfd = os.pidfd_open(proc.pid)
            except OSError:
                proc.close()
                raise ChannelClosed(f"process for {key} ended right after its hello") from None
        return proc

    def _on_readable(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._idle_fires = 0
            waiter.set_result(None)
            return
        # A fire queued before the last read took the data is expected once; twice means unread input.
        self._idle_fires += 1
        if self._idle_fires >= 2:
            self._unwatch()

    def _unwatch(self) -> None:
        if self._watched is not None:
            self._watched.remove_reader(self.sock.fileno())
            self._watched = None
        self._idle_fires = 0

    async def _readable(self) -> None:
        fd = self.sock.fileno()
        if fd < 0:
            raise ChannelClosed(f"channel of {self.key} is closed")
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        if self._watched is not loop:
            self._unwatch()
            loop.add_reader(fd, self._on_readable)
            self._watched = loop
        try:
            await self._waiter
        finally:
            self._waiter = None
        self._maybe_more = True

    def _fill(self, max_fds: int) -> bool:
        """Read what the socket has; False when it would block."""
        space = (socket.CMSG_SPACE(4 * max_fds) if max_fds else 0) + (_CREDS_SPACE if self._passcred else 0)
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(_READ, space, _MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            raise ChannelClosed(f"channel of {self.key} failed: {exc}") from exc
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                self._fds.extend(fds)
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= 12:
                self._creds = list(struct.unpack("3i", payload[:12]))
        if not data:
            raise ChannelClosed(f"sandbox process of {self.key} closed its channel")
        self._buf += data
        # A short read of a stream socket drained it: the next read waits for readiness first.
        self._maybe_more = len(data) >= _READ
        return True

    def _frame(self) -> dict[str, Any] | None:
        if len(self._buf) < 4:
            return None
        (size,) = struct.unpack_from(">I", self._buf)
        if size > self.max_frame:
            raise ProtocolError(f"{self.key} sent a frame of {size} bytes, over the limit of {self.max_frame}")
        if len(self._buf) < 4 + size:
            return None
        body = bytes(self._buf[4:4 + size])
        del self._buf[:4 + size]
        try:
            msg = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"{self.key} sent a frame that is not JSON ({type(exc).__name__})") from None
        if not isinstance(msg, dict):
            raise ProtocolError(f"{self.key} sent a frame that is not a JSON object")
        return msg

    async def recv(self, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
        """The next frame, and up to ``max_fds`` descriptors that came with it. Safe to cancel while waiting.

        It gives the event loop a turn after every ``_YIELD_AFTER`` units of work done without waiting, so
        a channel that is never empty (a sandbox flooding frames) takes its turn like any other call."""
        while True:
            if self._work >= _YIELD_AFTER:
                self._work = 0
                await asyncio.sleep(0)  # before taking a frame, so a cancel here loses nothing
            msg = self._frame()
            if msg is not None:
                self._work += 1
                fds, self._fds = self._fds, []
                for extra in fds[max_fds:]:
                    os.close(extra)
                return msg, fds[:max_fds]
            if self._maybe_more and self._fill(max_fds):
                self._work += _FILL_WORK
            else:
                self._maybe_more = False
                self._work = 0
                await self._readable()

    @property
    def mid_frame(self) -> bool:
        """A send was cut off (cancelled, timed out) after part of its frame: the channel is out of step."""
        return self._mid_frame

    async def send(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        data = memoryview(_wire.encode(msg))
        while data:
            try:
                if fds:
                    sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
                    fds = None
                else:
                    sent = self.sock.send(data)
                data = data[sent:]
                self._mid_frame = bool(data)
            except (BlockingIOError, InterruptedError):
                await self._writable()
            except OSError as exc:
                raise ChannelClosed(f"sandbox process of {self.key} is gone: {exc}") from exc

    async def _writable(self) -> None:
        if self.sock.fileno() < 0:
            raise ChannelClosed(f"channel of {self.key} is closed")
        self._writer = asyncio.get_running_loop().create_future()
        try:
            await ready(self.sock.fileno(), write=True, future=self._writer)
        finally:
            self._writer = None

    async def request(self, msg: dict[str, Any], fds: list[int] | None = None,
                      max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
        """Send a request and read its reply; an ``error`` reply raises SandboxError with its text."""
        await self.send(msg, fds)
        reply, got = await self.recv(max_fds)
        if reply.get("ok") is not True:
            for fd in got:
                os.close(fd)
            error = reply.get("error")
            raise SandboxError(str(error)[:500] if error is not None else f"{self.key} answered {str(reply)[:200]}")
        return reply, got

    async def replies(self, msg: dict[str, Any], max_fds: int) -> AsyncIterator[tuple[dict[str, Any], list[int]]]:
        """Send one request and yield replies until one says it is the last (``more`` false)."""
        await self.send(msg)
        while True:
            reply, fds = await self.recv(max_fds)
            yield reply, fds
            if not reply.get("more"):
                return

    def signal(self, signum: int) -> bool:
        try:
            os.kill(self.pid, signum)
            return True
        except ProcessLookupError:
            return False

    def kill(self) -> None:
        """SIGKILL the process through its pidfd (from_hello with hold_pid); nothing without one."""
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_group(self) -> None:
        """SIGKILL the process and its process group (the fallback when no cgroup is available)."""
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        """Close the channel; a call waiting to read or write on it fails with ChannelClosed (its watch is
        removed before the descriptor is closed, so no stale one is left in the selector). Call on the
        event loop."""
        loop = asyncio.get_running_loop()
        if self.sock.fileno() >= 0:
            self._unwatch()
        for waiter, unwatch in ((self._waiter, None), (self._writer, loop.remove_writer)):
            if waiter is not None and not waiter.done():
                if unwatch is not None:
                    unwatch(self.sock.fileno())
                waiter.set_exception(ChannelClosed(f"channel of {self.key} was closed"))
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.sock.fileno() < 0:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
