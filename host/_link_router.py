"""The router: turns a component's imported call into the gRPC call on the provider its link names.

Every call is resolved through the link table at call time, carries the verse id, the source component
and a bearer token as metadata, has a deadline, and is recorded (latency measured here, cost as the
provider reported it) on the registry's batch queue.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from worldrt.v1 import rpc

from ._links import LinkTable
from ._registry import Invocation, Registry

RPC_NAMES = {
    "start": "Start", "stop": "Stop", "snapshot": "Snapshot", "branch": "Branch", "execute": "Execute",
    "merge": "Merge", "optimize": "Optimize", "verify": "Verify",
}
DEFAULT_DEADLINE_S = 120.0


class RouterError(Exception):
    """A routed call failed: ``code`` is the gRPC status name (NOT_FOUND, UNAVAILABLE, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _deadline_s(operation: str, request: Message) -> float:
    timeout_ms = getattr(request, "timeout_ms", 0)
    if operation == "execute" and timeout_ms:
        return timeout_ms / 1000 + 5.0
    return 330.0 if operation in ("execute", "optimize", "verify") else DEFAULT_DEADLINE_S


class Router:
    def __init__(self, links: LinkTable, registry: Registry, address_of: Callable[[str], str],
                 default_token: str | None = None) -> None:
        self.links = links
        self.registry = registry
        self._address_of = address_of
        self._default_token = default_token or os.environ.get("WORLDRT_TOKEN")
        self._stubs: dict[str, tuple[grpc.Channel, rpc.WorldRuntimeStub]] = {}
        self._lock = threading.Lock()

    def stub(self, address: str) -> rpc.WorldRuntimeStub:
        entry = self._stubs.get(address)
        if entry is None:
            with self._lock:
                entry = self._stubs.get(address)
                if entry is None:
                    channel = grpc.insecure_channel(address, options=[
                        ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
                    entry = self._stubs[address] = (channel, rpc.WorldRuntimeStub(channel))
        return entry[1]

    def call(self, source: str, interface: str, operation: str, request: Message, verse_id: str = "",
             link_name: str = "default") -> Any:
        link = self.links.resolve(source, interface, link_name)
        if link is None:
            raise RouterError("FAILED_PRECONDITION", (
                f"component {source!r} has no link for interface {interface!r}; "
                f"link it with: worldrt link put {interface}=PROVIDER"))
        rpc_name = RPC_NAMES.get(operation)
        if rpc_name is None:
            raise RouterError("UNIMPLEMENTED", f"no provider operation {operation!r}")
        try:
            address = self._address_of(link.target_provider)
        except Exception as exc:  # noqa: BLE001 - a provider that cannot start is UNAVAILABLE to the guest
            raise RouterError("UNAVAILABLE", f"provider {link.target_provider} is not available: {exc}") from exc
        token = link.values.get("token") or self._default_token
        metadata = [("x-worldrt-verse-id", verse_id), ("x-worldrt-source", source),
                    ("x-worldrt-link-name", link.name)]
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        method = getattr(self.stub(address), rpc_name)
        started = time.perf_counter()
        try:
            reply, call = method.with_call(request, timeout=_deadline_s(operation, request), metadata=metadata)
        except grpc.RpcError as exc:
            latency_ms = (time.perf_counter() - started) * 1000
            code = exc.code().name if exc.code() else "UNKNOWN"
            self._record(link.target_provider, operation, verse_id, request,
                         {"error": code, "message": exc.details()}, latency_ms, _cost(exc))
            raise RouterError(code, exc.details() or code) from None
        latency_ms = (time.perf_counter() - started) * 1000
        self._record(link.target_provider, operation, verse_id, request, reply, latency_ms, _cost(call))
        return reply

    def _record(self, provider: str, operation: str, verse_id: str, request: Any, result: Any,
                latency_ms: float, cost: float) -> None:
        self.registry.record(Invocation(provider, operation, verse_id, request, result, latency_ms, cost, time.time()))

    def close(self) -> None:
        with self._lock:
            for channel, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()


def _cost(call: Any) -> float:
    try:
        for key, value in call.trailing_metadata() or ():
            if key == "x-worldrt-cost-units":
                return float(value)
    except (AttributeError, ValueError, TypeError):
        pass
    return 0.0
