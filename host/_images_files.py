"""The host's image, file and instance-listing calls: each goes to a sandbox provider (morph by default)
through the host's router, like every provider call: over the lattice on a lattice host (a call naming an
instance reaches the replica that owns it), recorded in the registry, its failure raised as the error
kind of its status; streams pass through event by event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.message import Message

from worldrt.errors import InvalidArgument
from worldrt.host.routing import Router
from worldrt.providers import CATALOG
from worldrt.v1 import host_pb, pb

# Builds can take minutes (the provider bounds them); the other calls answer within this.
CALL_TIMEOUT_S = 120.0
BUILD_TIMEOUT_S = 3600.0
Sink = Callable[[Any], None]


class ImagesAndFiles:
    """Mixed into Host, whose ``router`` makes the calls."""

    router: Router

    @staticmethod
    def _serving(provider: str, operation: str) -> str:
        name = provider or "morph"
        info = CATALOG.get(name)
        if info is None or operation not in info.operations:
            serving = [p.provider_id for p in CATALOG.values() if operation in p.operations]
            raise InvalidArgument(f"provider {name!r} does not serve {operation}; use {' or '.join(serving)}")
        return name

    def _unary(self, provider: str, operation: str, rpc_name: str, request: Message) -> Any:
        return self.router.send(self._serving(provider, operation), rpc_name, request, timeout_s=CALL_TIMEOUT_S)

    def _stream(self, provider: str, operation: str, rpc_name: str, request: Message,
                timeout_s: float) -> Iterator[Any]:
        return self.router.send_stream(self._serving(provider, operation), rpc_name, request, timeout_s=timeout_s)

    # images -----------------------------------------------------------------------------------------
    def build_image(self, request: host_pb.HostBuildImageRequest, on_event: Sink | None = None) -> pb.Image:
        """Build on the provider, reporting its progress events; the image it made (or found made)."""
        image: pb.Image | None = None
        for event in self._stream(request.provider, "build_image", "BuildImage", request.build, BUILD_TIMEOUT_S):
            if event.HasField("image"):
                image = event.image
            elif on_event is not None:
                on_event(event)
        if image is None:
            raise InvalidArgument(f"{request.provider or 'morph'} ended the build without an image")
        return image

    def list_images(self, request: host_pb.HostImageRequest) -> pb.ListImagesReply:
        return self._unary(request.provider, "list_images", "ListImages", pb.ListImagesRequest())  # type: ignore[no-any-return]

    def inspect_image(self, request: host_pb.HostImageRequest) -> pb.Image:
        return self._unary(request.provider, "inspect_image", "InspectImage",  # type: ignore[no-any-return]
                           pb.ImageRef(image=request.image))

    def delete_image(self, request: host_pb.HostImageRequest) -> pb.Image:
        return self._unary(request.provider, "delete_image", "DeleteImage",  # type: ignore[no-any-return]
                           pb.ImageRef(image=request.image))

    # instances --------------------------------------------------------------------------------------
    def list_instances(self, request: host_pb.HostListInstancesRequest) -> pb.ListInstancesReply:
        return self._unary(request.provider, "list_instances", "ListInstances",  # type: ignore[no-any-return]
                           pb.ListInstancesRequest())

    # files ------------------------------------------------------------------------------------------
    def write_files(self, request: host_pb.HostWriteFilesRequest) -> pb.WriteFilesReply:
        return self._unary(request.provider, "write_files", "WriteFiles", request.files)  # type: ignore[no-any-return]

    def list_files(self, request: host_pb.HostListFilesRequest) -> pb.ListFilesReply:
        return self._unary(request.provider, "list_files", "ListFiles", request.list)  # type: ignore[no-any-return]

    def read_file(self, request: host_pb.HostReadFileRequest, on_event: Sink | None = None) -> pb.FileChunk:
        """Each chunk with data goes to ``on_event``; the last chunk (eof) is returned."""
        last: pb.FileChunk | None = None
        for chunk in self._stream(request.provider, "read_file", "ReadFile", request.read, CALL_TIMEOUT_S):
            if chunk.eof:
                last = chunk
            elif on_event is not None:
                on_event(chunk)
        if last is None:
            raise InvalidArgument(f"{request.provider or 'morph'} ended the read without its last chunk")
        return last
