"""envd's Filesystem service (``filesystem.Filesystem``, served by the ``FilesystemASGIApplication`` of the
``e2b`` wheel) on the host's file calls: Stat, MakeDir, Move, Remove, ListDir (to a depth), WatchDir (a
stream) and the polled watchers (CreateWatcher, GetWatcherEvents, RemoveWatcher).

Every path is mapped from ``/home/user`` into the instance's workspace first (``_paths``); the provider
confines it to the workspace again. A watch is a stream of the host's that lasts its timeout, so each one
has a thread of its own, outside the admitted pool, and at most ``MAX_WATCHES`` run at once. A watch that
is removed, or whose WatchDir client went away (``_disconnect`` cancels the stream at once), is stopped and
then woken: the provider's watch has no heartbeat and would end only at its next event or its timeout, so an
empty marker file (``WAKE_PREFIX`` + the watch's id) is made and removed in the watched folder; the event
it raises ends the watch's thread, which cancels the provider's stream. Marker events are never reported to
any watch.
"""

from __future__ import annotations

import asyncio
import posixpath
import secrets
import stat as stats
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from e2b.envd.filesystem import filesystem_pb as fpb
from e2b.envd.filesystem.filesystem_connect import Filesystem
from protobuf import Oneof
from protobuf.wkt.google.protobuf.timestamp_pb import Timestamp

from worldrt.errors import WorldError
from worldrt.host.api.e2b._envd import KEEPALIVE_S, Envd, connect_error
from worldrt.host.api.e2b._paths import to_e2b, to_workspace
from worldrt.host.api.e2b._sandboxes import PROVIDER
from worldrt.v1 import host_pb, pb

MAX_WATCHES = 64
WAKE_PREFIX = ".worldrt-e2b-wake-"
WATCH_TIMEOUT_S = 600
_MAX_DEPTH = 8
_MAX_ENTRIES = 10_000
_KINDS = {"file": fpb.FileType.FILE, "dir": fpb.FileType.DIRECTORY, "symlink": fpb.FileType.SYMLINK}
_EVENTS = {pb.FILE_EVENT_CREATE: fpb.EventType.CREATE, pb.FILE_EVENT_MODIFY: fpb.EventType.WRITE,
           pb.FILE_EVENT_REMOVE: fpb.EventType.REMOVE, pb.FILE_EVENT_RENAME: fpb.EventType.RENAME,
           pb.FILE_EVENT_CHMOD: fpb.EventType.CHMOD}


def entry(info: pb.FileInfo) -> fpb.EntryInfo:
    return fpb.EntryInfo(name=info.name or posixpath.basename(to_e2b(info.path)), type=_KINDS.get(info.kind),
                         path=to_e2b(info.path), size=info.size, mode=info.mode,
                         permissions=stats.filemode(info.mode)[1:], owner="user", group="user",
                         modified_time=Timestamp(seconds=info.modified_at.seconds, nanos=info.modified_at.nanos),
                         symlink_target=info.symlink_target or None, is_symlink=info.kind == "symlink")


@dataclass
class _Watch:
    sandbox_id: str
    id: str
    path: str = ""  # the watched folder, in the workspace
    events: list[fpb.FilesystemEvent] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    ended: str = ""  # why it ended, when it did by itself


class FilesystemService(Filesystem):
    def __init__(self, envd: Envd) -> None:
        self.envd = envd
        self.api = envd.api
        self.host = envd.api.host
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()

    def _op(self, sandbox_id: str, fn: Any) -> Any:
        return self.api.file_op(sandbox_id, fn)

    async def stat(self, request: fpb.StatRequest, ctx: RequestContext[Any, Any]) -> fpb.StatResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        path = await self._path(request.path)
        info = await self.envd.run(sandbox_id, self._op, sandbox_id, lambda iid: self.host.stat_file(
            host_pb.HostStatFileRequest(provider=PROVIDER, stat=pb.StatFileRequest(instance_id=iid, path=path))))
        return fpb.StatResponse(entry=entry(info))

    async def make_dir(self, request: fpb.MakeDirRequest, ctx: RequestContext[Any, Any]) -> fpb.MakeDirResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        path = await self._path(request.path)
        reply = await self.envd.run(sandbox_id, self._op, sandbox_id, lambda iid: self.host.make_directory(
            host_pb.HostMakeDirectoryRequest(provider=PROVIDER, mkdir=pb.MakeDirectoryRequest(
                instance_id=iid, path=path, parents=True))))
        if not reply.created:
            raise ConnectError(Code.ALREADY_EXISTS, f"directory {request.path} already exists")
        return fpb.MakeDirResponse(entry=entry(reply.entry))

    async def move(self, request: fpb.MoveRequest, ctx: RequestContext[Any, Any]) -> fpb.MoveResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        source, destination = await self._path(request.source), await self._path(request.destination)
        info = await self.envd.run(sandbox_id, self._op, sandbox_id, lambda iid: self.host.move_file(
            host_pb.HostMoveFileRequest(provider=PROVIDER, move=pb.MoveFileRequest(
                instance_id=iid, source=source, destination=destination, overwrite=True))))
        return fpb.MoveResponse(entry=entry(info))

    async def remove(self, request: fpb.RemoveRequest, ctx: RequestContext[Any, Any]) -> fpb.RemoveResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        path = await self._path(request.path)
        await self.envd.run(sandbox_id, self._op, sandbox_id, lambda iid: self.host.remove_file(
            host_pb.HostRemoveFileRequest(provider=PROVIDER, remove=pb.RemoveFileRequest(
                instance_id=iid, path=path, recursive=True))))
        return fpb.RemoveResponse()

    async def list_dir(self, request: fpb.ListDirRequest, ctx: RequestContext[Any, Any]) -> fpb.ListDirResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        path = await self._path(request.path)
        depth = min(request.depth or 1, _MAX_DEPTH)
        entries = await self.envd.run(sandbox_id, self._op, sandbox_id, lambda iid: self._walk(iid, path, depth))
        return fpb.ListDirResponse(entries=[entry(e) for e in entries])

    def _walk(self, instance_id: str, path: str, depth: int) -> list[pb.FileInfo]:
        found: list[pb.FileInfo] = []
        level = [path]
        for _ in range(depth):
            below: list[str] = []
            for folder in level:
                reply = self.host.list_files(host_pb.HostListFilesRequest(
                    provider=PROVIDER, list=pb.ListFilesRequest(instance_id=instance_id, path=folder)))
                found.extend(reply.entries)
                below.extend(e.path for e in reply.entries if e.kind == "dir")
                if len(found) > _MAX_ENTRIES:
                    return found[:_MAX_ENTRIES]
            level = below
        return found

    @staticmethod
    async def _path(path: str) -> str:
        try:
            return to_workspace(path)
        except WorldError as exc:
            raise connect_error(exc) from None

    # watches ---------------------------------------------------------------------------------------
    def _watch(self, sandbox_id: str, path: str, recursive: bool, on_event: Any, on_end: Any = None) -> _Watch:
        """A watch of ``path`` on a thread of its own, each event to ``on_event`` (and kept on the watch), and
        ``on_end()`` once it has ended (stopped, timed out, or its sandbox gone)."""
        sandbox = self.api.running(sandbox_id)
        with self._lock:
            if len(self._watches) >= MAX_WATCHES:
                raise ConnectError(Code.RESOURCE_EXHAUSTED, f"{MAX_WATCHES} directory watches run already; "
                                                            f"stop one (WatchHandle.stop) first")
            watch_id = secrets.token_hex(8)
            watch = self._watches[watch_id] = _Watch(sandbox_id, watch_id, path)
        ready = threading.Event()

        def sink(event: pb.FileWatchEvent) -> None:
            if watch.stopped.is_set():
                raise _Stopped
            if event.kind == pb.FILE_EVENT_READY:
                ready.set()
                return
            kind = _EVENTS.get(event.kind)
            if kind is None or not event.path or posixpath.basename(event.path).startswith(WAKE_PREFIX):
                return
            name = posixpath.relpath(event.path, path or ".")
            found = fpb.FilesystemEvent(name=name, type=kind)
            if on_event is None:
                watch.events.append(found)
            else:
                on_event(found)

        def run() -> None:
            try:
                self.host.watch_files(host_pb.HostWatchFilesRequest(provider=PROVIDER, watch=pb.WatchFilesRequest(
                    instance_id=sandbox.instance_id, path=path, recursive=recursive, timeout_s=WATCH_TIMEOUT_S)), sink)
                watch.ended = "the watch reached its timeout"
            except _Stopped:
                pass
            except WorldError as exc:
                watch.ended = exc.message
            finally:
                ready.set()
                watch.stopped.set()
                with self._lock:
                    self._watches.pop(watch_id, None)
                if on_end is not None:
                    on_end()

        threading.Thread(target=run, name=f"e2b-watch-{watch_id}", daemon=True).start()
        ready.wait(30)
        if watch.ended:
            raise ConnectError(Code.NOT_FOUND if "not" in watch.ended else Code.UNAVAILABLE, watch.ended)
        return watch

    async def watch_dir(self, request: fpb.WatchDirRequest, ctx: RequestContext[Any, Any]
                        ) -> AsyncIterator[fpb.WatchDirResponse]:
        sandbox_id = self.envd.sandbox_id(ctx)
        path = await self._path(request.path)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[fpb.FilesystemEvent | None] = asyncio.Queue()

        def put(event: fpb.FilesystemEvent | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:
                pass  # the loop is closed: the server has stopped, and nobody reads the stream

        watch = await self.envd.run(sandbox_id, self._watch, sandbox_id, path, request.recursive, put,
                                    lambda: put(None))
        try:
            yield fpb.WatchDirResponse(event=Oneof[Literal["start"], fpb.WatchDirResponse.StartEvent](
                "start", fpb.WatchDirResponse.StartEvent()))
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield fpb.WatchDirResponse(event=Oneof[Literal["keepalive"], fpb.WatchDirResponse.KeepAlive](
                        "keepalive", fpb.WatchDirResponse.KeepAlive()))
                    continue
                if event is None:  # the watch ended (its sandbox is gone, or it timed out): so does the stream
                    break
                yield fpb.WatchDirResponse(event=Oneof[Literal["filesystem"], fpb.FilesystemEvent]("filesystem", event))
        finally:
            self._stop(watch)

    def _stop(self, watch: _Watch) -> None:
        """Stop ``watch`` and wake its thread (see the module's docstring); returns at once."""
        if watch.stopped.is_set():
            return  # it ended by itself, or was stopped already
        watch.stopped.set()
        threading.Thread(target=self._wake, args=(watch,), name=f"e2b-wake-{watch.id}", daemon=True).start()

    def _wake(self, watch: _Watch) -> None:
        marker = posixpath.join(watch.path, WAKE_PREFIX + watch.id) if watch.path else WAKE_PREFIX + watch.id
        try:
            self.api.file_op(watch.sandbox_id, lambda iid: self.host.write_files(host_pb.HostWriteFilesRequest(
                provider=PROVIDER, files=pb.WriteFilesRequest(instance_id=iid, files=[pb.FileEntry(path=marker)]))))
            self.api.file_op(watch.sandbox_id, lambda iid: self.host.remove_file(host_pb.HostRemoveFileRequest(
                provider=PROVIDER, remove=pb.RemoveFileRequest(instance_id=iid, path=marker))))
        except WorldError:
            pass  # the folder or the sandbox is gone: so is the provider's watch, or it ends at its timeout

    async def create_watcher(self, request: fpb.CreateWatcherRequest, ctx: RequestContext[Any, Any]
                             ) -> fpb.CreateWatcherResponse:
        sandbox_id = self.envd.sandbox_id(ctx)
        path = await self._path(request.path)
        watch = await self.envd.run(sandbox_id, self._watch, sandbox_id, path, request.recursive, None)
        return fpb.CreateWatcherResponse(watcher_id=watch.id)

    def _mine(self, sandbox_id: str, watcher_id: str) -> _Watch:
        with self._lock:
            watch = self._watches.get(watcher_id)
        if watch is None or watch.sandbox_id != sandbox_id:
            raise ConnectError(Code.NOT_FOUND, f"watcher {watcher_id} not found (it was stopped, or it ended)")
        return watch

    async def get_watcher_events(self, request: fpb.GetWatcherEventsRequest, ctx: RequestContext[Any, Any]
                                 ) -> fpb.GetWatcherEventsResponse:
        watch = self._mine(self.envd.sandbox_id(ctx), request.watcher_id)
        events, watch.events[:] = list(watch.events), []
        return fpb.GetWatcherEventsResponse(events=events)

    async def remove_watcher(self, request: fpb.RemoveWatcherRequest, ctx: RequestContext[Any, Any]
                             ) -> fpb.RemoveWatcherResponse:
        watch = self._mine(self.envd.sandbox_id(ctx), request.watcher_id)
        self._stop(watch)
        with self._lock:
            self._watches.pop(request.watcher_id, None)
        return fpb.RemoveWatcherResponse()


class _Stopped(Exception):
    """Raised from a watch's sink once the watch was stopped: the host then cancels the provider's stream."""
