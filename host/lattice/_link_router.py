"""The host's router: a component's imported call becomes the gRPC call on the provider its link names.

Links are resolved at every call, so a link changed while a component runs applies to its next call.
Each call carries the verse id, the source component and the host's bearer token for its providers as
metadata (a link's own values and secrets are link data, never the bearer), has a deadline, and is
recorded (latency measured here, cost as the provider reported it) in the registry before the reply
goes back to the component. A ``HOST:PORT`` address is reached over TLS when TLS settings are given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from worldrt.providers._channel import ClientTls, InsecureChannelError, open_channel
from worldrt.v1 import rpc

from worldrt.host.lattice._links import LinkTable
from worldrt.host.registry._store import Registry
from worldrt.host.runtime._world import OPERATIONS, CallContext, ProviderCallError, Router

DEFAULT_DEADLINE_S = 120.0
LONG_DEADLINE_S = 330.0


def _deadline_s(operation: str, request: Message) -> float:
    timeout_ms = getattr(request, "timeout_ms", 0)
    if operation == "execute" and timeout_ms:
        return timeout_ms / 1000 + 5.0
    return LONG_DEADLINE_S if operation in ("execute", "optimize", "verify") else DEFAULT_DEADLINE_S


def cost_of(call: Any) -> float:
    """The cost units a provider reported in a call's trailing metadata (0 when it reported none)."""
    try:
        for key, value in call.trailing_metadata() or ():
            if key == "x-worldrt-cost-units":
                return float(value)
    except (AttributeError, ValueError, TypeError):
        pass
    return 0.0


# (interface, operation, provider, latency_ms, cost_units, error)
CallObserver = Callable[[str, str, str, float, float, str], None]


class LinkRouter(Router):
    """Routes through the link table; ``address_of`` gives (starting it if needed) a provider's address,
    and ``token`` is the bearer token every call to those providers carries."""

    def __init__(self, links: LinkTable, registry: Registry, address_of: Callable[[str], str],
                 token: str | None = None, *, tls: ClientTls | None = None) -> None:
        self.links = links
        self.registry = registry
        self._address_of = address_of
        self._token = token
        self._tls = tls if tls is not None else ClientTls.from_env()
        self._stubs: dict[str, tuple[grpc.Channel, rpc.WorldRuntimeStub]] = {}
        self._lock = threading.Lock()
        self._observers: dict[int, CallObserver] = {}

    def observe(self, observer: CallObserver | None) -> None:
        """Report every call made on this thread (interface, operation, provider, latency_ms, cost, error):
        a component's imports run on the thread that invokes it."""
        if observer is None:
            self._observers.pop(threading.get_ident(), None)
        else:
            self._observers[threading.get_ident()] = observer

    def stub(self, address: str) -> rpc.WorldRuntimeStub:
        entry = self._stubs.get(address)
        if entry is None:
            with self._lock:
                entry = self._stubs.get(address)
                if entry is None:
                    channel = open_channel(address, tls=self._tls, token=self._token, options=[
                        ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
                    entry = self._stubs[address] = (channel, rpc.WorldRuntimeStub(channel))
        return entry[1]

    def forget(self, address: str) -> None:
        """Drop the channel to ``address`` (its daemon was restarted): the next call connects afresh."""
        with self._lock:
            entry = self._stubs.pop(address, None)
        if entry is not None:
            entry[0].close()

    def call(self, interface: str, operation: str, request: Message, context: CallContext) -> Message:
        op = OPERATIONS.get((interface, operation))
        if op is None:
            raise ProviderCallError("UNIMPLEMENTED", f"the world has no operation {interface}.{operation}")
        name = context.link_name(interface)
        link = self.links.resolve(context.source, interface, name)
        if link is None:
            named = "" if name == "default" else f" named {name!r}"
            option = "" if name == "default" else f" --name {name}"
            raise ProviderCallError("FAILED_PRECONDITION", (
                f"component {context.source!r} has no link{named} for interface {interface!r}; "
                f"link it with: worldrt link put {interface}=PROVIDER{option}"))
        provider = link.target_provider
        try:
            address = self._address_of(provider)
        except Exception as exc:  # noqa: BLE001 - a provider that cannot start is UNAVAILABLE to the guest
            raise ProviderCallError("UNAVAILABLE", f"provider {provider} is not available: {exc}") from exc
        verse_id = str(context.verse_id)
        metadata = [("x-worldrt-verse-id", verse_id), ("x-worldrt-source", context.source),
                    ("x-worldrt-link-name", link.name)]
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        try:
            method = getattr(self.stub(address), op.rpc)
        except InsecureChannelError as exc:
            raise ProviderCallError("FAILED_PRECONDITION", str(exc)) from None
        started = time.perf_counter()
        try:
            reply, call = method.with_call(request, timeout=context.remaining_s(_deadline_s(operation, request)),
                                            metadata=metadata)
        except grpc.RpcError as exc:
            latency_ms = (time.perf_counter() - started) * 1000
            code = exc.code().name if exc.code() else "UNKNOWN"  # type: ignore[attr-defined]
            details = exc.details() or code  # type: ignore[attr-defined]
            self._finish(verse_id, interface, operation, provider, request,
                         {"error": code, "message": details}, latency_ms, cost_of(exc), code, link.secret_values)
            raise ProviderCallError(code, details) from None
        latency_ms = (time.perf_counter() - started) * 1000
        self._finish(verse_id, interface, operation, provider, request, reply, latency_ms, cost_of(call), "",
                     link.secret_values)
        return reply

    def _finish(self, verse_id: str, interface: str, operation: str, provider: str, request: Message,
                result: Any, latency_ms: float, cost: float, error: str, secrets: tuple[str, ...]) -> None:
        self.registry.record_call(provider, operation, verse_id, request, result, latency_ms, cost, time.time(),
                                  secrets)
        observer = self._observers.get(threading.get_ident())
        if observer is not None:
            observer(interface, operation, provider, latency_ms, cost, error)

    def close(self) -> None:
        with self._lock:
            for channel, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()
