"""The CLI's view of a host: a running one over gRPC, or an embedded one in this process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from worldrt.v1 import host_pb, host_rpc, pb

from ._host import Host, HostError


class HostAPI(Protocol):
    def put_link(self, request: pb.LinkConfig) -> pb.LinkReply: ...
    def delete_link(self, request: pb.LinkConfig) -> pb.LinkReply: ...
    def list_links(self) -> host_pb.ListLinksReply: ...
    def list_providers(self) -> host_pb.ListProvidersReply: ...
    def provider_status(self, name: str) -> host_pb.ProviderState: ...
    def load_component(self, request: host_pb.LoadComponentRequest) -> host_pb.ComponentInfo: ...
    def invoke(self, request: host_pb.InvokeRequest,
               on_event: Callable[[host_pb.InvokeEvent], None] | None = None) -> host_pb.InvokeOutcome: ...
    def recent_invocations(self, request: host_pb.RecentInvocationsRequest) -> host_pb.RecentInvocationsReply: ...
    def run_verse(self, request: host_pb.VerseRequest,
                  on_event: Callable[[host_pb.InvokeEvent], None] | None = None) -> dict[str, Any]: ...
    def analytics(self, request: host_pb.AnalyticsRequest) -> host_pb.AnalyticsReply: ...
    def close(self) -> None: ...


class RemoteHost:
    """A host answering at ``address``; errors come back as HostError with the host's sentence."""

    def __init__(self, address: str, token: str | None = None) -> None:
        self.address = address
        self._channel = grpc.insecure_channel(address)
        self._stub = host_rpc.HostStub(self._channel)
        self._md = (("authorization", f"Bearer {token}"),) if token else ()

    @staticmethod
    def answering(address: str) -> bool:
        if address.startswith("unix:") and not Path(address[5:]).exists():
            return False
        with grpc.insecure_channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def _call(self, method: Callable[..., object], request: object) -> object:
        try:
            return method(request, metadata=self._md)
        except grpc.RpcError as exc:
            raise HostError(f"host at {self.address}: {exc.details()}") from None

    def put_link(self, request: pb.LinkConfig) -> pb.LinkReply:
        return self._call(self._stub.PutLink, request)  # type: ignore[return-value]

    def delete_link(self, request: pb.LinkConfig) -> pb.LinkReply:
        return self._call(self._stub.DeleteLink, request)  # type: ignore[return-value]

    def list_links(self) -> host_pb.ListLinksReply:
        return self._call(self._stub.ListLinks, host_pb.ListLinksRequest())  # type: ignore[return-value]

    def list_providers(self) -> host_pb.ListProvidersReply:
        return self._call(self._stub.ListProviders, host_pb.ListProvidersRequest())  # type: ignore[return-value]

    def provider_status(self, name: str) -> host_pb.ProviderState:
        return self._call(self._stub.ProviderStatus,  # type: ignore[return-value]
                          host_pb.ProviderStatusRequest(provider_id=name))

    def load_component(self, request: host_pb.LoadComponentRequest) -> host_pb.ComponentInfo:
        if request.path:
            request.path = str(Path(request.path).resolve())
        return self._call(self._stub.LoadComponent, request)  # type: ignore[return-value]

    def invoke(self, request: host_pb.InvokeRequest,
               on_event: Callable[[host_pb.InvokeEvent], None] | None = None) -> host_pb.InvokeOutcome:
        if request.path:
            request.path = str(Path(request.path).resolve())
        try:
            for event in self._stub.Invoke(request, metadata=self._md):
                if event.HasField("outcome"):
                    return event.outcome
                if on_event is not None:
                    on_event(event)
        except grpc.RpcError as exc:
            raise HostError(f"host at {self.address}: {exc.details()}") from None
        raise HostError(f"host at {self.address} ended the invocation without an outcome")

    def recent_invocations(self, request: host_pb.RecentInvocationsRequest) -> host_pb.RecentInvocationsReply:
        return self._call(self._stub.RecentInvocations, request)  # type: ignore[return-value]

    def run_verse(self, request: host_pb.VerseRequest,
                  on_event: Callable[[host_pb.InvokeEvent], None] | None = None) -> dict[str, Any]:
        if request.component_path:
            request.component_path = str(Path(request.component_path).resolve())
        try:
            for event in self._stub.RunVerse(request, metadata=self._md):
                if event.HasField("result_json"):
                    return json.loads(event.result_json)  # type: ignore[no-any-return]
                if on_event is not None:
                    on_event(event)
        except grpc.RpcError as exc:
            raise HostError(f"host at {self.address}: {exc.details()}") from None
        raise HostError(f"host at {self.address} ended the verse run without a result")

    def analytics(self, request: host_pb.AnalyticsRequest) -> host_pb.AnalyticsReply:
        return self._call(self._stub.Analytics, request)  # type: ignore[return-value]

    def close(self) -> None:
        self._channel.close()


class Session:
    """``with Session(address) as host``: the running host at ``address`` if one answers, else an embedded one."""

    def __init__(self, address: str, db: Path | None, home: Path | None) -> None:
        self.address, self.db, self.home = address, db, home
        self.api: HostAPI | None = None
        self.remote = False

    def __enter__(self) -> HostAPI:
        if RemoteHost.answering(self.address):
            self.api = RemoteHost(self.address, os.environ.get("WORLDRT_TOKEN"))
            self.remote = True
        else:
            self.api = Host(self.db, self.home)
        return self.api

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.api is not None:
            self.api.close()
