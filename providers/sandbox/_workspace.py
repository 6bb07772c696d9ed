"""Files in and out of a member's workspace, done by the member itself inside its sandbox.

The daemon never opens a path of the sandbox: it sends the member a request and a pipe, and the member
(as its own uid, in its own namespaces) checks the path, then reads the bytes from the pipe into the file
or writes the file into the pipe. The daemon caps every size itself, before it sends and while it reads,
and checks every frame; a member that answers out of protocol is stopped by the caller. A caller's path is
checked here first (valid UTF-8, at most 4096 bytes, no name over 255 bytes: INVALID_ARGUMENT), and every
name a member sends back must be valid UTF-8: one that is not (a lone surrogate) is a protocol break.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from worldrt import errors as err
from worldrt.providers.sandbox import _frames
from worldrt.providers.sandbox._process import ProtocolError, SandboxProcess
from worldrt.providers.sandbox._readiness import ready
from worldrt.providers.sandbox._sandbox import MIB, Limits

CHUNK = 1 << 20
KINDS = ("file", "dir", "symlink", "other")
MAX_ENTRIES = 10_000
FILES_TIMEOUT_S = 60.0
# The kernel's limits, in bytes of UTF-8: a whole path, and one name in it.
_MAX_PATH = 4096
_MAX_NAME = 255
_F_SETPIPE_SZ = 1031


def _pipe() -> tuple[int, int]:
    """A pipe of 1 MiB where the kernel allows it (fewer, larger chunks than its default 64 KiB)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, CHUNK)
    return read_end, write_end


@dataclass(frozen=True)
class NewFile:
    path: str
    data: bytes
    mode: int = 0o644


def check_path(path: str, *, empty: bool = False) -> None:
    """Refuse a caller's path the member could not use: InvalidArgument with the reason, before anything is sent."""
    if not path and not empty:
        raise err.InvalidArgument("a file path is required (a path in the workspace, like data/in.csv)")
    if "\0" in path:
        raise err.InvalidArgument("a file path cannot hold a NUL character")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise err.InvalidArgument(f"the path {path.encode('utf-8', 'backslashreplace').decode()!r} is not valid "
                                  f"UTF-8 (it holds a lone surrogate)") from None
    if size > _MAX_PATH:
        raise err.InvalidArgument(f"the path is {size} bytes long, above the {_MAX_PATH} bytes a path may have")
    for name in path.split("/"):
        if len(name.encode()) > _MAX_NAME:
            raise err.InvalidArgument(f"the name {name[:40]!r}... in the path is {len(name.encode())} bytes long, "
                                      f"above the {_MAX_NAME} bytes a file name may have")


def _text(raw: Any, who: str, what: str, limit: int = _MAX_PATH) -> str:
    """A string the member sent, which must be valid UTF-8 within ``limit`` characters (a name with a lone
    surrogate cannot reach a client: it breaks the protocol)."""
    if not isinstance(raw, str) or len(raw) > limit:
        raise ProtocolError(f"{who} sent a malformed frame ({what})")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"{who} sent a malformed frame ({what} is not valid UTF-8: it holds a lone "
                            f"surrogate)") from None
    return raw


def _refusal(reply: dict[str, Any], who: str) -> None:
    """Raise the error kind a member's refusal names (its sentence is shown, cut short)."""
    if reply.get("ok") is True:
        return
    error = reply.get("error")
    if not isinstance(error, str):
        raise ProtocolError(f"{who} sent a malformed frame (neither ok nor an error in answer to a file request)")
    error = _text(error[:1000], who, "the text of a refusal")
    kind = reply.get("refused")
    raise refusal_error(kind if isinstance(kind, str) else "", error)


def check_writes(files: list[NewFile], limits: Limits) -> int:
    """The total bytes of a write, refused before anything is sent when a file or the whole is past the
    instance's limits."""
    total = 0
    for f in files:
        check_path(f.path)
        if len(f.data) > limits.file_size_mb * MIB:
            raise err.ResourceExhausted(f"{f.path} is {len(f.data)} bytes, above the instance's file size limit of "
                                        f"{limits.file_size_mb} MiB")
        total += len(f.data)
    if total > limits.disk_bytes:
        raise err.ResourceExhausted(f"the files are {total} bytes together, above the instance's disk of "
                                    f"{limits.disk_mb} MiB")
    return total


async def _pump(fd: int, files: list[NewFile]) -> None:
    """Write every file's bytes into the pipe (consumed); stops quietly when the member closed its end."""
    os.set_blocking(fd, False)
    try:
        for f in files:
            view = memoryview(f.data)
            while view:
                try:
                    view = view[os.write(fd, view[:CHUNK]):]
                except BlockingIOError:
                    await ready(fd, write=True)
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


async def write(proc: SandboxProcess, files: list[NewFile]) -> tuple[int, int]:
    """Have the member write ``files`` (checked already): (files, bytes) it wrote."""
    read_end, write_end = _pipe()
    try:
        await proc.send({"op": "write", "files": [{"path": f.path, "size": len(f.data), "mode": f.mode}
                                                  for f in files]}, [read_end])
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    pumping = asyncio.create_task(_pump(write_end, files))
    try:
        reply, _ = await proc.recv()
    finally:
        if not pumping.done():
            pumping.cancel()
        await asyncio.gather(pumping, return_exceptions=True)
    _refusal(reply, proc.key)
    return _frames.count(reply, "files", proc.key), _frames.count(reply, "bytes", proc.key)


def _entry(raw: Any, who: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{who} sent a malformed frame (a listing entry is not an object)")
    out: dict[str, Any] = {}
    for key in ("name", "path", "kind", "target"):
        out[key] = _text(raw.get(key, ""), who, f"a listing entry's {key}")
    if out["kind"] not in KINDS:
        raise ProtocolError(f"{who} sent a malformed frame (a listing entry's kind)")
    for key in ("size", "mode", "mtime_ns"):
        out[key] = _frames.count(raw, key, who)
    for key in ("uid", "gid"):
        out[key] = _frames.count(raw, key, who)
        if out[key] >= 2**32:
            raise ProtocolError(f"{who} sent a malformed frame (a listing entry's {key})")
    out["mode"] &= 0o7777
    return out


async def _ask(proc: SandboxProcess, request: dict[str, Any]) -> dict[str, Any]:
    """One file request and its reply (a refusal raised as its error kind)."""
    await proc.send(request)
    reply, _ = await proc.recv()
    _refusal(reply, proc.key)
    return reply


async def stat(proc: SandboxProcess, path: str) -> dict[str, Any]:
    """The entry at ``path`` (a symlink itself, not what it leads to)."""
    check_path(path, empty=True)
    return _entry((await _ask(proc, {"op": "stat", "path": path})).get("entry"), proc.key)


async def make_directory(proc: SandboxProcess, path: str, parents: bool, mode: int) -> tuple[dict[str, Any], bool]:
    """(the folder's entry, whether it was made now)."""
    check_path(path)
    reply = await _ask(proc, {"op": "mkdir", "path": path, "parents": parents, "mode": mode & 0o777})
    created = reply.get("created")
    if not isinstance(created, bool):
        raise ProtocolError(f"{proc.key} sent a malformed frame (created is not a boolean)")
    return _entry(reply.get("entry"), proc.key), created


async def move(proc: SandboxProcess, source: str, destination: str, overwrite: bool) -> dict[str, Any]:
    """The entry at its new place."""
    check_path(source)
    check_path(destination)
    reply = await _ask(proc, {"op": "move", "source": source, "destination": destination, "overwrite": overwrite})
    return _entry(reply.get("entry"), proc.key)


async def remove(proc: SandboxProcess, path: str, recursive: bool) -> tuple[str, int]:
    """(what the path was, how many entries went)."""
    check_path(path)
    reply = await _ask(proc, {"op": "remove", "path": path, "recursive": recursive})
    kind = reply.get("kind")
    if kind not in KINDS:
        raise ProtocolError(f"{proc.key} sent a malformed frame (the kind of what was removed)")
    return kind, _frames.count(reply, "removed", proc.key)


async def listing(proc: SandboxProcess, path: str) -> tuple[str, list[dict[str, Any]], bool]:
    """(the folder relative to the workspace, its entries, whether more were left out)."""
    check_path(path, empty=True)
    await proc.send({"op": "list", "path": path})
    reply, _ = await proc.recv()
    _refusal(reply, proc.key)
    entries = reply.get("entries")
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise ProtocolError(f"{proc.key} sent a malformed frame (a listing)")
    folder = _text(reply.get("path"), proc.key, "a listing's folder")
    return folder, [_entry(e, proc.key) for e in entries], reply.get("truncated") is True


@dataclass(frozen=True)
class Opened:
    size: int
    mode: int


async def read(proc: SandboxProcess, path: str, offset: int, length: int, cap: int) -> tuple[Opened,
                                                                                             AsyncGenerator[bytes, None]]:
    """Open a file through the member: its size and mode, and its bytes from ``offset`` (``length`` of
    them, or to its end) in chunks. Past ``cap`` bytes the read is refused (it never reads more)."""
    if offset < 0 or length < 0:
        raise err.InvalidArgument("offset and length must not be negative")
    check_path(path)
    read_end, write_end = _pipe()
    try:
        await proc.send({"op": "read", "path": path, "offset": offset, "length": length}, [write_end])
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    try:
        reply, _ = await proc.recv()
        _refusal(reply, proc.key)
        opened = Opened(_frames.count(reply, "size", proc.key), _frames.count(reply, "mode", proc.key) & 0o7777)
    except BaseException:
        os.close(read_end)
        raise
    want = min(length, max(0, opened.size - offset)) if length else max(0, opened.size - offset)
    if want > cap:
        os.close(read_end)
        raise err.ResourceExhausted(f"{path} has {want} bytes to read, above the {cap} bytes one read may take; "
                                    f"read it in parts (offset and length)")

    async def chunks() -> AsyncGenerator[bytes, None]:
        os.set_blocking(read_end, False)
        got = 0
        try:
            while got < want:
                try:
                    chunk = os.read(read_end, min(CHUNK, want - got))
                except BlockingIOError:
                    await ready(read_end)
                    continue
                if not chunk:
                    break  # the file shrank while it was read: what there was
                got += len(chunk)
                yield chunk
        finally:
            os.close(read_end)

    return opened, chunks()


async def watch(proc: SandboxProcess, path: str, recursive: bool, max_dirs: int) -> tuple[str, int]:
    """Have the member start a watcher of the folder ``path``: (the folder relative to the workspace, a
    socket to the watcher)."""
    check_path(path, empty=True)
    await proc.send({"op": "watch", "path": path, "recursive": recursive, "max_dirs": max_dirs})
    reply, fds = await proc.recv(max_fds=1)
    try:
        _refusal(reply, proc.key)
        if len(fds) != 1:
            raise ProtocolError(f"{proc.key} sent a malformed frame (a watch without its socket)")
        folder = _text(reply.get("path"), proc.key, "a watched folder")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return folder, fds[0]


def refusal_error(kind: str, message: str) -> err.WorldError:
    """The error a member's refusal of a kind names (a run's working folder, say)."""
    kinds: dict[str, type[err.WorldError]] = {"invalid": err.InvalidArgument, "exhausted": err.ResourceExhausted,
                                              "missing": err.NotFound, "exists": err.AlreadyExists}
    return kinds.get(kind, err.FailedPrecondition)(message[:1000])


class Feed:
    """Bytes for a run's stdin, written into a pipe the member reads (its read end goes with the request),
    on the event loop without ever blocking on the member: a run that never reads leaves it waiting."""

    def __init__(self, data: bytes) -> None:
        self.read_end, self.write_end = _pipe()
        self.data = data
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        os.close(self.read_end)
        self.task = asyncio.create_task(_pump(self.write_end, [NewFile("stdin", self.data)]))

    async def stop(self) -> None:
        if self.task is None:
            os.close(self.read_end)
            os.close(self.write_end)
            return
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def feed(data: bytes) -> Feed:
    return Feed(data)
