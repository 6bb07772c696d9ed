"""A Router with a fixed provider per interface and no link table: each call is the WorldRuntime rpc on
that provider's channel, with a deadline and the caller's metadata. An address ``HOST:PORT`` is reached
over TLS when TLS settings are given (or set in WORLDRT_TLS_*), and a token is never sent in cleartext
off loopback."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf.message import Message

from worldrt.providers._channel import ClientTls, open_channel
from worldrt.v1 import rpc

from worldrt.host.runtime._world import OPERATIONS, CallContext, ProviderCallError, Router


class DirectRouter(Router):
    """``targets`` maps an interface ("generator", ...) to a channel or an address (``unix:PATH``, ``HOST:PORT``)."""

    def __init__(self, targets: Mapping[str, grpc.Channel | str], *, token: str | None = None,
                 timeout_s: float = 60.0, tls: ClientTls | None = None) -> None:
        self._owned: list[grpc.Channel] = []
        self._stubs: dict[str, rpc.WorldRuntimeStub] = {}
        tls = tls if tls is not None else ClientTls.from_env()
        for interface, target in targets.items():
            if isinstance(target, str):
                try:
                    target = open_channel(target, tls=tls, token=token)
                except BaseException:
                    self.close()
                    raise
                self._owned.append(target)
            self._stubs[interface] = rpc.WorldRuntimeStub(target)
        self.token = token
        self.timeout_s = timeout_s

    def call(self, interface: str, operation: str, request: Message, context: CallContext) -> Message:
        op = OPERATIONS.get((interface, operation))
        if op is None:
            raise ProviderCallError("UNIMPLEMENTED", f"the world has no operation {interface}.{operation}")
        stub = self._stubs.get(interface)
        if stub is None:
            raise ProviderCallError("FAILED_PRECONDITION", f"no provider is set for interface {interface}")
        timeout = context.remaining_s(self.timeout_s)
        if timeout <= 0:
            raise ProviderCallError("DEADLINE_EXCEEDED",
                                    f"{context.source}'s invocation has no time left for {interface}.{operation}")
        metadata = [("x-worldrt-verse-id", str(context.verse_id)), ("x-worldrt-source", context.source)]
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        try:
            return getattr(stub, op.rpc)(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise ProviderCallError(exc.code().name, exc.details() or "") from None  # type: ignore[attr-defined]

    def close(self) -> None:
        for channel in self._owned:
            channel.close()
        self._owned.clear()
