"""The host's file calls beyond write, read and list: stat, make a folder, move, remove and watch, each
forwarded to a sandbox provider (morph unless the request names modal) through the host's router, so it is
recorded in the registry and crosses the lattice to the replica that owns the instance; a failure is raised
as the error kind of its status (a missing path NotFound, an existing one AlreadyExists).

Invariants: the provider confines every path to the workspace; a watch is a stream that lasts as long as
its timeout (the provider's maximum when 0), so the service admits it with the calls that follow
processes (host/_admission.py), never in the places of the instance's other calls.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import closing
from typing import Any, cast

from google.protobuf.message import Message

from worldrt.errors import Aborted, InvalidArgument
from worldrt.host.routing import Router
from worldrt.providers import CATALOG
from worldrt.v1 import host_pb, pb

CALL_TIMEOUT_S = 120.0
# A watch's deadline beyond its own timeout (the provider ends it then with FILE_EVENT_ENDED).
WATCH_GRACE_S = 30.0
WATCH_DEADLINE_S = 3600.0
Sink = Callable[[Any], None]


def _provider(provider: str, operation: str) -> str:
    name = provider or "morph"
    info = CATALOG.get(name)
    if info is None or operation not in info.operations:
        serving = [p.provider_id for p in CATALOG.values() if operation in p.operations]
        raise InvalidArgument(f"provider {name!r} does not serve {operation}; use {' or '.join(serving)}")
    return name


class FileOps:
    """Mixed into Host, whose ``router`` makes the calls."""

    router: Router

    def _file_call(self, provider: str, operation: str, rpc: str, request: Message) -> Any:
        return self.router.send(_provider(provider, operation), rpc, request, timeout_s=CALL_TIMEOUT_S)

    def stat_file(self, request: host_pb.HostStatFileRequest) -> pb.FileInfo:
        return cast(pb.FileInfo, self._file_call(request.provider, "stat_file", "StatFile", request.stat))

    def make_directory(self, request: host_pb.HostMakeDirectoryRequest) -> pb.MakeDirectoryReply:
        return cast(pb.MakeDirectoryReply,
                    self._file_call(request.provider, "make_directory", "MakeDirectory", request.mkdir))

    def move_file(self, request: host_pb.HostMoveFileRequest) -> pb.FileInfo:
        return cast(pb.FileInfo, self._file_call(request.provider, "move_file", "MoveFile", request.move))

    def remove_file(self, request: host_pb.HostRemoveFileRequest) -> pb.RemoveFileReply:
        return cast(pb.RemoveFileReply, self._file_call(request.provider, "remove_file", "RemoveFile",
                                                        request.remove))

    def watch_files(self, request: host_pb.HostWatchFilesRequest, on_event: Sink | None = None) -> pb.FileWatchEvent:
        """Each event of the watch to ``on_event`` as it comes; the last (FILE_EVENT_ENDED) is returned."""
        timeout_s = request.watch.timeout_s + WATCH_GRACE_S if request.watch.timeout_s else WATCH_DEADLINE_S
        events = cast("Generator[pb.FileWatchEvent, None, None]", self.router.send_stream(
            _provider(request.provider, "watch_files"), "WatchFiles", request.watch, timeout_s=timeout_s))
        with closing(events):  # a sink that raises (its reader went away) cancels the provider's stream
            for event in events:
                if event.kind == pb.FILE_EVENT_ENDED:
                    return event
                if on_event is not None:
                    on_event(event)
        raise Aborted(f"{request.provider or 'morph'} ended the watch without its last event")
