"""The host's image, file and instance-listing calls: each is forwarded to a sandbox provider's daemon (morph by default).

The host adds nothing to them but the choice of provider, the daemon's token and its errors as the
project's error kinds; streams pass through event by event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from worldrt.errors import InvalidArgument, from_rpc_error
from worldrt.providers import CATALOG
from worldrt.v1 import host_pb, pb

# Builds can take minutes (the provider bounds them); the other calls answer within this.
CALL_TIMEOUT_S = 120.0
BUILD_TIMEOUT_S = 3600.0
Sink = Callable[[Any], None]


class ImagesAndFiles:
    """Mixed into Host: ``_provider_stub`` gives a provider's stub and the metadata its calls carry."""

    _provider_stub: Callable[[str], tuple[object, tuple[tuple[str, str], ...]]]

    def _serving(self, provider: str, operation: str) -> tuple[Any, tuple[tuple[str, str], ...]]:
        name = provider or "morph"
        info = CATALOG.get(name)
        if info is None or operation not in info.operations:
            serving = [p.provider_id for p in CATALOG.values() if operation in p.operations]
            raise InvalidArgument(f"provider {name!r} does not serve {operation}; use {' or '.join(serving)}")
        return self._provider_stub(name)

    def _unary(self, provider: str, operation: str, rpc_name: str, request: Any) -> Any:
        stub, metadata = self._serving(provider, operation)
        try:
            return getattr(stub, rpc_name)(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"{provider or 'morph'} {rpc_name}") from None

    def _stream(self, provider: str, operation: str, rpc_name: str, request: Any, timeout_s: float) -> Iterator[Any]:
        stub, metadata = self._serving(provider, operation)
        try:
            yield from getattr(stub, rpc_name)(request, metadata=metadata, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"{provider or 'morph'} {rpc_name}") from None

    # images -----------------------------------------------------------------------------------------
    def build_image(self, request: host_pb.HostBuildImageRequest, on_event: Sink | None = None) -> pb.Image:
        """Build on the provider, reporting its progress events; the image it made (or found made)."""
        for event in self._stream(request.provider, "build_image", "BuildImage", request.build, BUILD_TIMEOUT_S):
            if event.HasField("image"):
                return event.image  # type: ignore[no-any-return]
            if on_event is not None:
                on_event(event)
        raise InvalidArgument(f"{request.provider or 'morph'} ended the build without an image")

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
        for chunk in self._stream(request.provider, "read_file", "ReadFile", request.read, CALL_TIMEOUT_S):
            if chunk.eof:
                return chunk  # type: ignore[no-any-return]
            if on_event is not None:
                on_event(chunk)
        raise InvalidArgument(f"{request.provider or 'morph'} ended the read without its last chunk")
