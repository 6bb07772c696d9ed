"""Framing between the provider daemon and the processes inside a sandbox.

A frame is a 4-byte big-endian length and a UTF-8 JSON object. File descriptors (new channels to
forked processes) travel as SCM_RIGHTS on the frame that announces them. This module is imported on
both sides, so it uses the standard library only.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
from typing import Any

_HEADER = struct.Struct(">I")
# The largest frame the daemon sends (code to run); the daemon reads much less from a sandbox.
MAX_FRAME = 64 * 1024 * 1024
# The kernel refuses more than SCM_MAX_FD (253) descriptors in one message.
MAX_FDS_PER_FRAME = 200


class ChannelClosed(EOFError):
    """The process at the other end of a channel has gone."""


def encode(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def send(sock: socket.socket, obj: dict[str, Any], fds: list[int] | None = None) -> None:
    data = encode(obj)
    if fds:
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        data = data[sent:]
    if data:
        sock.sendall(data)


def send_hello(sock: socket.socket, obj: dict[str, Any]) -> None:
    """Send a frame carrying this process's credentials, so the reader learns its pid in its own namespace."""
    creds = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    data = encode(obj)
    sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    if sent < len(data):
        sock.sendall(data[sent:])


def _recv_exact(sock: socket.socket, n: int, fds: list[int], creds: list[int]) -> bytes:
    chunks: list[bytes] = []
    while n:
        data, ancdata, _flags, _addr = sock.recvmsg(n, socket.CMSG_SPACE(4 * 253))
        if not data:
            for fd in fds:
                os.close(fd)
            raise ChannelClosed("sandbox process closed its channel")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[: len(payload) - (len(payload) % arr.itemsize)])
                fds.extend(arr)
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                creds[:] = struct.unpack("3i", payload[:12])
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def recv(sock: socket.socket) -> tuple[dict[str, Any], list[int], list[int]]:
    """Read one frame: (object, received fds, [pid, uid, gid] if the sender attached credentials)."""
    fds: list[int] = []
    creds: list[int] = []
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, fds, creds))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    body = _recv_exact(sock, size, fds, creds)
    return json.loads(body), fds, creds
