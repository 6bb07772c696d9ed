"""The Host API, declared once: each method with its ``worldrt.v1.Host`` rpc and request type.

``Host`` implements ``HostAPI`` in-process; the gRPC service serves ``Host`` through this table, and
``RemoteHost`` calls a running host through it. A streamed method reports ``InvokeEvent``s as it goes
and ends with one that carries its result (``finish`` wraps the result, ``result_of`` unwraps it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from worldrt.v1 import host_pb, pb

EventSink = Callable[[host_pb.InvokeEvent], None]


class HostAPI(Protocol):
    def put_link(self, request: pb.LinkConfig) -> pb.LinkReply: ...
    def delete_link(self, request: pb.LinkConfig) -> pb.LinkReply: ...
    def list_links(self, request: host_pb.ListLinksRequest) -> host_pb.ListLinksReply: ...
    def list_providers(self, request: host_pb.ListProvidersRequest) -> host_pb.ListProvidersReply: ...
    def provider_status(self, request: host_pb.ProviderStatusRequest) -> host_pb.ProviderState: ...
    def load_component(self, request: host_pb.LoadComponentRequest) -> host_pb.ComponentInfo: ...
    def invoke(self, request: host_pb.InvokeRequest, on_event: EventSink | None = None) -> host_pb.InvokeOutcome: ...
    def run_verse(self, request: host_pb.VerseRequest, on_event: EventSink | None = None) -> dict[str, Any]: ...
    def analytics(self, request: host_pb.AnalyticsRequest) -> host_pb.AnalyticsReply: ...
    def recent_invocations(self, request: host_pb.RecentInvocationsRequest) -> host_pb.RecentInvocationsReply: ...
    def call_provider(self, request: host_pb.ProviderCallRequest) -> host_pb.ProviderCallReply: ...
    def call_provider_stream(self, request: host_pb.ProviderCallRequest, on_event: EventSink | None = None,
                             ) -> pb.ExecutionResult | host_pb.ProcessOutputEnd: ...
    def build_image(self, request: host_pb.HostBuildImageRequest, on_event: Callable[[Any], None] | None = None,
                    ) -> pb.Image: ...
    def list_images(self, request: host_pb.HostImageRequest) -> pb.ListImagesReply: ...
    def list_instances(self, request: host_pb.HostListInstancesRequest) -> pb.ListInstancesReply: ...
    def inspect_image(self, request: host_pb.HostImageRequest) -> pb.Image: ...
    def delete_image(self, request: host_pb.HostImageRequest) -> pb.Image: ...
    def write_files(self, request: host_pb.HostWriteFilesRequest) -> pb.WriteFilesReply: ...
    def read_file(self, request: host_pb.HostReadFileRequest, on_event: Callable[[Any], None] | None = None,
                  ) -> pb.FileChunk: ...
    def list_files(self, request: host_pb.HostListFilesRequest) -> pb.ListFilesReply: ...
    def stat_file(self, request: host_pb.HostStatFileRequest) -> pb.FileInfo: ...
    def make_directory(self, request: host_pb.HostMakeDirectoryRequest) -> pb.MakeDirectoryReply: ...
    def move_file(self, request: host_pb.HostMoveFileRequest) -> pb.FileInfo: ...
    def remove_file(self, request: host_pb.HostRemoveFileRequest) -> pb.RemoveFileReply: ...
    def watch_files(self, request: host_pb.HostWatchFilesRequest, on_event: Callable[[Any], None] | None = None,
                    ) -> pb.FileWatchEvent: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Method:
    name: str
    rpc: str
    request: type[Message]
    # Streamed: (wrap the result as the last event, the result of an event or None when it is not the last).
    finish: Callable[[Any], Message] | None = None
    result_of: Callable[[Any], Any] | None = None


def _outcome_of(event: host_pb.InvokeEvent) -> host_pb.InvokeOutcome | None:
    return event.outcome if event.HasField("outcome") else None


def _call_stream_result_of(event: host_pb.InvokeEvent) -> pb.ExecutionResult | host_pb.ProcessOutputEnd | None:
    """CallProviderStream's result: an execute's ExecutionResult, or where a read_process_output stopped."""
    if event.HasField("execution") and event.execution.HasField("result"):
        return event.execution.result
    if event.HasField("process_end"):
        return event.process_end
    return None


def _call_stream_finish(result: pb.ExecutionResult | host_pb.ProcessOutputEnd) -> host_pb.InvokeEvent:
    if isinstance(result, host_pb.ProcessOutputEnd):
        return host_pb.InvokeEvent(process_end=result)
    return host_pb.InvokeEvent(execution=pb.ExecutionEvent(result=result))


def _verse_result_of(event: host_pb.InvokeEvent) -> dict[str, Any] | None:
    return json.loads(event.result_json) if event.HasField("result_json") else None


METHODS: tuple[Method, ...] = (
    Method("put_link", "PutLink", pb.LinkConfig),
    Method("delete_link", "DeleteLink", pb.LinkConfig),
    Method("list_links", "ListLinks", host_pb.ListLinksRequest),
    Method("list_providers", "ListProviders", host_pb.ListProvidersRequest),
    Method("provider_status", "ProviderStatus", host_pb.ProviderStatusRequest),
    Method("load_component", "LoadComponent", host_pb.LoadComponentRequest),
    Method("invoke", "Invoke", host_pb.InvokeRequest,
           finish=lambda outcome: host_pb.InvokeEvent(outcome=outcome), result_of=_outcome_of),
    Method("run_verse", "RunVerse", host_pb.VerseRequest,
           finish=lambda result: host_pb.InvokeEvent(result_json=json.dumps(result, default=str)),
           result_of=_verse_result_of),
    Method("analytics", "Analytics", host_pb.AnalyticsRequest),
    Method("recent_invocations", "RecentInvocations", host_pb.RecentInvocationsRequest),
    Method("call_provider", "CallProvider", host_pb.ProviderCallRequest),
    Method("call_provider_stream", "CallProviderStream", host_pb.ProviderCallRequest,
           finish=_call_stream_finish, result_of=_call_stream_result_of),
    Method("build_image", "BuildImage", host_pb.HostBuildImageRequest,
           finish=lambda image: pb.BuildImageEvent(image=image),
           result_of=lambda event: event.image if event.HasField("image") else None),
    Method("list_images", "ListImages", host_pb.HostImageRequest),
    Method("list_instances", "ListInstances", host_pb.HostListInstancesRequest),
    Method("inspect_image", "InspectImage", host_pb.HostImageRequest),
    Method("delete_image", "DeleteImage", host_pb.HostImageRequest),
    Method("write_files", "WriteFiles", host_pb.HostWriteFilesRequest),
    Method("read_file", "ReadFile", host_pb.HostReadFileRequest,
           finish=lambda chunk: chunk, result_of=lambda chunk: chunk if chunk.eof else None),
    Method("list_files", "ListFiles", host_pb.HostListFilesRequest),
    Method("stat_file", "StatFile", host_pb.HostStatFileRequest),
    Method("make_directory", "MakeDirectory", host_pb.HostMakeDirectoryRequest),
    Method("move_file", "MoveFile", host_pb.HostMoveFileRequest),
    Method("remove_file", "RemoveFile", host_pb.HostRemoveFileRequest),
    Method("watch_files", "WatchFiles", host_pb.HostWatchFilesRequest,
           finish=lambda event: event, result_of=lambda event: event if event.kind == pb.FILE_EVENT_ENDED else None),
)
BY_NAME = {m.name: m for m in METHODS}
