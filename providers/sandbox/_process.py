"""Daemon-side handle of one process inside a sandbox: its channel, its host pid and its cgroup."""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Any, Callable

from . import _wire

ChannelClosed = _wire.ChannelClosed


class SandboxError(RuntimeError):
    """A process in a sandbox could not do what it was asked (its message says why)."""


class SandboxProcess:
    """One zygote, instance or snapshot process. Calls block: run them off the event loop."""

    def __init__(self, sock: socket.socket, pid: int, key: str) -> None:
        self.sock = sock
        self.pid = pid
        self.key = key
        self._lock = threading.Lock()

    @classmethod
    def from_hello(cls, fd: int, key: str) -> "SandboxProcess":
        """Adopt a channel to a freshly forked process and read its hello (which carries its pid)."""
        sock = socket.socket(fileno=fd)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        try:
            msg, fds, creds = _wire.recv(sock)
        except BaseException:
            sock.close()
            raise
        for extra in fds:
            os.close(extra)
        if not creds or msg.get("hello") != key:
            sock.close()
            raise SandboxError(f"process for {key} sent no valid hello: {msg!r}")
        return cls(sock, creds[0], key)

    def request(self, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        with self._lock:
            _wire.send(self.sock, msg)
            reply, fds, _ = _wire.recv(self.sock)
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise SandboxError(reply["error"])
        return reply, fds

    def request_many(self, msg: dict[str, Any]) -> list[tuple[dict[str, Any], list[int]]]:
        """Send one request and read replies until one says it is the last (``more`` false)."""
        replies = []
        with self._lock:
            _wire.send(self.sock, msg)
            while True:
                reply, fds, _ = _wire.recv(self.sock)
                replies.append((reply, fds))
                if not reply.get("more"):
                    return replies

    def stream(self, msg: dict[str, Any], on_event: Callable[[str, str], None]) -> dict[str, Any]:
        """Send a request whose reply is a run of output events closed by a ``done`` frame."""
        with self._lock:
            _wire.send(self.sock, msg)
            while True:
                frame, fds, _ = _wire.recv(self.sock)
                for fd in fds:
                    os.close(fd)
                event = frame.get("ev")
                if event == "done":
                    return frame
                if event in ("stdout", "stderr"):
                    on_event(event, frame["d"])
                elif "error" in frame:
                    raise SandboxError(frame["error"])

    def signal(self, signum: int) -> bool:
        try:
            os.kill(self.pid, signum)
            return True
        except ProcessLookupError:
            return False

    def kill_group(self) -> None:
        """SIGKILL the process and its process group (the fallback when no cgroup is available)."""
        for target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
