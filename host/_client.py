"""The CLI's view of a host: a running one over gRPC, or an embedded one in this process.

A running host needs its bearer token: ``$WORLDRT_TOKEN``, else the file ``HOME/host.token`` that
``worldrt host serve`` made. A ``HOST:PORT`` host is reached over TLS with the settings given (or
WORLDRT_TLS_CA, WORLDRT_TLS_CERT, WORLDRT_TLS_KEY); a token is never sent to one in cleartext unless
it is on loopback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from worldrt.providers._auth import TOKEN_ENV, TokenError, read_token_file
from worldrt.providers._channel import ClientTls, InsecureChannelError, open_channel, refuse_cleartext_token, tcp_host
from worldrt.v1 import host_pb, host_rpc, pb

from worldrt.host._host import Host, HostError

HOST_TOKEN_FILE = "host.token"


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

    def __init__(self, address: str, token: str | None = None, tls: ClientTls | None = None) -> None:
        self.address = address
        try:
            self._channel = open_channel(address, tls=tls, token=token)
        except InsecureChannelError as exc:
            raise HostError(str(exc)) from None
        self._stub = host_rpc.HostStub(self._channel)
        self._md = (("authorization", f"Bearer {token}"),) if token else ()

    @staticmethod
    def probe(address: str, tls: ClientTls | None = None) -> str | None:
        """"serving" or "not serving" as the health of the host at ``address`` says; None if none answers."""
        if address.startswith("unix:") and not Path(address[5:]).exists():
            return None
        with open_channel(address, tls=tls) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            except grpc.RpcError:
                return None
        return "serving" if reply.status == health_pb2.HealthCheckResponse.SERVING else "not serving"

    @staticmethod
    def answering(address: str, tls: ClientTls | None = None) -> bool:
        return RemoteHost.probe(address, tls) == "serving"

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


def client_token(home: Path | None) -> str | None:
    """The token for a running host: ``$WORLDRT_TOKEN``, else ``HOME/host.token`` if it exists."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    path = (home or Path(".")) / HOST_TOKEN_FILE
    if not path.exists():
        return None
    try:
        return read_token_file(path)
    except TokenError as exc:
        raise HostError(str(exc)) from None


class Session:
    """``with Session(address) as host``: the running host at ``address`` if one answers, else an embedded one.

    Only the local host socket (``unix:``) falls back to an embedded host: a ``HOST:PORT`` that does not
    answer is an error, since the user asked for that host."""

    def __init__(self, address: str, db: Path | None, home: Path | None, *, token: str | None = None,
                 tls: ClientTls | None = None) -> None:
        self.address, self.db, self.home = address, db, home
        self.token, self.tls = token, tls
        self.api: HostAPI | None = None
        self.remote = False

    def __enter__(self) -> HostAPI:
        token = self.token or client_token(self.home)
        tcp = tcp_host(self.address) is not None
        try:
            refuse_cleartext_token(self.address, self.tls, token)  # before any packet, the health probe's too
        except InsecureChannelError as exc:
            raise HostError(str(exc)) from None
        if RemoteHost.probe(self.address, self.tls) is not None:
            self.api = RemoteHost(self.address, token, self.tls)
            self.remote = True
        elif tcp:
            raise HostError(f"no host answers at {self.address}" + (
                "" if self.tls else " in cleartext (for a host with TLS, give its CA with --tls-ca)"))
        else:
            self.api = Host(self.db, self.home)
        return self.api

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.api is not None:
            self.api.close()
