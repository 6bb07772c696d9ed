"""The provider base class: the seed trait's methods, one per RPC of ``worldrt.v1.WorldRuntime``.

A provider overrides the operations it serves. Every other operation answers UNIMPLEMENTED with the
names of the providers that serve it. Methods take and return the contract's protobuf messages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from worldrt.errors import InvalidArgument, Unimplemented
from worldrt.providers._canonical import parse_json
from worldrt.providers._catalog import CATALOG, providers_for
from worldrt.providers._links import Link, LinkTable
from worldrt.providers._metering import Meter, PriceTable
from worldrt.v1 import pb


@dataclass
class Call:
    """What a provider method knows about the call it serves."""

    operation: str
    meter: Meter
    verse_id: str = ""
    source: str = ""
    # The link the call came through (the caller's own, else the one for any component), if any.
    link: Link | None = None
    # Who the caller is, as the host or bridge that authenticated it says (x-worldrt-owner); "" for the
    # host's own calls. Image names belong to it.
    owner: str = ""

    @property
    def values(self) -> dict[str, str]:
        """The link's values for this caller (wasmCloud's per-source link config), empty without one."""
        return self.link.values if self.link is not None else {}


@dataclass
class ProviderOptions:
    state_dir: Path
    values: dict[str, str] = field(default_factory=dict)


class Provider:
    provider_id: ClassVar[str]
    prices: ClassVar[PriceTable] = PriceTable()

    def __init__(self, options: ProviderOptions) -> None:
        self.options = options
        self.links = LinkTable()
        self.config: dict[str, str] = {}

    @property
    def trit(self) -> int:
        return CATALOG[self.provider_id].trit

    async def open(self) -> None:
        """Prepare the engine; the daemon reports SERVING only after this returns."""

    async def close(self) -> int:
        """Stop every instance the provider holds; return how many were stopped."""
        return 0

    def capability_items(self) -> dict[str, object]:
        return {}

    def languages(self) -> list[str]:
        return []

    def _unimplemented(self, operation: str) -> Unimplemented:
        others = [p for p in providers_for(operation) if p != self.provider_id]
        where = f"; use {' or '.join(others)}" if others else ""
        return Unimplemented(f"{self.provider_id} does not implement {operation}{where}")

    # Lifecycle and links (served by every provider)
    async def init(self, request: pb.ProviderConfig, call: Call) -> pb.InitReply:
        self.config = dict(request.values)
        if request.json:
            extra = parse_json(request.json, "ProviderConfig.json")
            if isinstance(extra, dict):
                self.config.update({k: str(v) for k, v in extra.items()})
        return pb.InitReply(provider_id=self.provider_id, trit=self.trit)

    async def receive_link_config(self, request: pb.LinkConfig, call: Call) -> pb.LinkReply:
        if not request.link_id:
            raise InvalidArgument("LinkConfig.link_id is required")
        if request.target_provider and request.target_provider != self.provider_id:
            raise InvalidArgument(
                f"link {request.link_id} targets {request.target_provider!r}, but this daemon is {self.provider_id!r}"
            )
        existed = self.links.put(Link(request.link_id, request.source_component, request.target_provider or
                                      self.provider_id, request.name or "default", tuple(request.interfaces),
                                      dict(request.values), dict(request.secrets)))
        return pb.LinkReply(link_id=request.link_id, existed=existed, links=len(self.links))

    async def delete_link(self, request: pb.LinkConfig, call: Call) -> pb.LinkReply:
        existed = self.links.delete(request.link_id)
        return pb.LinkReply(link_id=request.link_id, existed=existed, links=len(self.links))

    async def capabilities(self, request: pb.CapabilitiesRequest, call: Call) -> pb.CapabilitiesReply:
        info = CATALOG[self.provider_id]
        return pb.CapabilitiesReply(
            provider_id=self.provider_id, name=info.name, trit=info.trit,
            capabilities=[pb.Capability(name=k, value_json=json.dumps(v, sort_keys=True))
                          for k, v in self.capability_items().items()],
            languages=self.languages(), operations=list(info.operations),
        )

    # Operations (each provider overrides the ones it serves)
    async def start(self, request: pb.StartRequest, call: Call) -> pb.Instance:
        raise self._unimplemented("start")

    async def stop(self, request: pb.InstanceRef, call: Call) -> pb.Instance:
        raise self._unimplemented("stop")

    async def snapshot(self, request: pb.SnapshotRequest, call: Call) -> pb.SnapshotRef:
        raise self._unimplemented("snapshot")

    async def branch(self, request: pb.BranchRequest, call: Call) -> pb.BranchReply:
        raise self._unimplemented("branch")

    async def execute(self, request: pb.ExecuteRequest, call: Call) -> pb.ExecutionResult:
        raise self._unimplemented("execute")

    def execute_stream(self, request: pb.ExecuteRequest, call: Call) -> AsyncIterator[pb.ExecutionEvent]:
        raise self._unimplemented("execute_stream")

    async def merge(self, request: pb.MergeRequest, call: Call) -> pb.Instance:
        raise self._unimplemented("merge")

    async def list_instances(self, request: pb.ListInstancesRequest, call: Call) -> pb.ListInstancesReply:
        raise self._unimplemented("list_instances")

    async def write_files(self, request: pb.WriteFilesRequest, call: Call) -> pb.WriteFilesReply:
        raise self._unimplemented("write_files")

    def read_file(self, request: pb.ReadFileRequest, call: Call) -> AsyncIterator[pb.FileChunk]:
        raise self._unimplemented("read_file")

    async def read_file_chunk(self, request: pb.ReadFileRequest, call: Call) -> pb.FileChunk:
        raise self._unimplemented("read_file_chunk")

    async def list_files(self, request: pb.ListFilesRequest, call: Call) -> pb.ListFilesReply:
        raise self._unimplemented("list_files")

    async def stat_file(self, request: pb.StatFileRequest, call: Call) -> pb.FileInfo:
        raise self._unimplemented("stat_file")

    async def make_directory(self, request: pb.MakeDirectoryRequest, call: Call) -> pb.MakeDirectoryReply:
        raise self._unimplemented("make_directory")

    async def move_file(self, request: pb.MoveFileRequest, call: Call) -> pb.FileInfo:
        raise self._unimplemented("move_file")

    async def remove_file(self, request: pb.RemoveFileRequest, call: Call) -> pb.RemoveFileReply:
        raise self._unimplemented("remove_file")

    def watch_files(self, request: pb.WatchFilesRequest, call: Call) -> AsyncIterator[pb.FileWatchEvent]:
        raise self._unimplemented("watch_files")

    def build_image(self, request: pb.BuildImageRequest, call: Call) -> AsyncIterator[pb.BuildImageEvent]:
        raise self._unimplemented("build_image")

    async def list_images(self, request: pb.ListImagesRequest, call: Call) -> pb.ListImagesReply:
        raise self._unimplemented("list_images")

    async def inspect_image(self, request: pb.ImageRef, call: Call) -> pb.Image:
        raise self._unimplemented("inspect_image")

    async def delete_image(self, request: pb.ImageRef, call: Call) -> pb.Image:
        raise self._unimplemented("delete_image")

    # processes
    async def start_process(self, request: pb.StartProcessRequest, call: Call) -> pb.ProcessInfo:
        raise self._unimplemented("start_process")

    def read_process_output(self, request: pb.ReadProcessOutputRequest,
                            call: Call) -> AsyncIterator[pb.ProcessOutputChunk]:
        raise self._unimplemented("read_process_output")

    async def write_process_stdin(self, request: pb.WriteProcessStdinRequest,
                                  call: Call) -> pb.WriteProcessStdinReply:
        raise self._unimplemented("write_process_stdin")

    async def wait_process(self, request: pb.WaitProcessRequest, call: Call) -> pb.ProcessInfo:
        raise self._unimplemented("wait_process")

    async def signal_process(self, request: pb.SignalProcessRequest, call: Call) -> pb.ProcessInfo:
        raise self._unimplemented("signal_process")

    async def list_processes(self, request: pb.ListProcessesRequest, call: Call) -> pb.ListProcessesReply:
        raise self._unimplemented("list_processes")

    async def optimize(self, request: pb.OptimizeRequest, call: Call) -> pb.OptimizeReply:
        raise self._unimplemented("optimize")

    async def verify(self, request: pb.VerifyRequest, call: Call) -> pb.VerifyReply:
        raise self._unimplemented("verify")
