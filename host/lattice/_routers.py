"""Routers: a component's imported call becomes the gRPC call on the provider that serves it.

* ``LinkRouter`` (the host's) resolves the component's link at every call, so a link changed while a
  component runs applies to its next call; it records each call in the registry before the reply goes
  back to the component, and reports it to the invocation's observer.
* ``DirectRouter`` has a fixed provider per interface and no link table (tools and benchmarks).

Each call carries the verse id and the source component as metadata and the bearer token of the
providers it reaches (a link's own values and secrets are link data, never the bearer), and a deadline
no later than the invocation's. A failure is raised as the error kind of its status. A ``HOST:PORT``
address is reached over TLS when TLS settings are given; a token is never sent in cleartext off loopback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import Message

from worldrt.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Unavailable,
    WorldError,
    from_rpc_error,
)
from worldrt.host.lattice._links import LinkTable
from worldrt.host.registry import Registry
from worldrt.host.runtime import OPERATIONS, CallContext, Operation, Router
from worldrt.providers import ClientTls, open_channel
from worldrt.v1 import pb, rpc

DEFAULT_DEADLINE_S = 120.0
LONG_DEADLINE_S = 330.0
_MAX_MESSAGE = 64 * 1024 * 1024


def _deadline_s(op: Operation, request: Message) -> float:
    timeout_ms = getattr(request, "timeout_ms", 0)
    if op.name == "execute" and timeout_ms:
        return timeout_ms / 1000 + 5.0
    return LONG_DEADLINE_S if op.name in ("execute", "optimize", "verify") else DEFAULT_DEADLINE_S


def cost_of(call: Any) -> float:
    """The cost units a provider reported in a call's trailing metadata (0 when it reported none)."""
    try:
        for key, value in call.trailing_metadata() or ():
            if key == "x-worldrt-cost-units":
                return float(value)
    except (AttributeError, ValueError, TypeError):
        pass
    return 0.0


def _costed(reply: Message, cost: float) -> Message:
    """An ExecutionResult shows the component its cost, which the provider sent in the trailer."""
    if isinstance(reply, pb.ExecutionResult):
        reply.cost_units = cost
    return reply


def _metadata(context: CallContext, token: str | None, link_name: str = "") -> list[tuple[str, str]]:
    metadata = [("x-worldrt-verse-id", str(context.verse_id)), ("x-worldrt-source", context.source)]
    if link_name:
        metadata.append(("x-worldrt-link-name", link_name))
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    return metadata


def _timeout(op: Operation, request: Message, context: CallContext, limit_s: float | None = None) -> float:
    timeout = context.remaining_s(limit_s if limit_s is not None else _deadline_s(op, request))
    if timeout <= 0:
        raise DeadlineExceeded(f"{context.source}'s invocation has no time left for {op.interface}.{op.name}")
    return timeout


class CallReport(NamedTuple):
    """One routed call as an observer hears of it; ``latency_ms`` includes ``startup_ms``."""

    interface: str
    operation: str
    provider: str
    latency_ms: float
    cost_units: float
    error: str
    startup_ms: float


CallObserver = Callable[[CallReport], None]


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
        """Report every call made on this thread (a CallReport): a component's imports run on the thread
        that invokes it."""
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
                    channel = open_channel(address, tls=self._tls, token=self._token,
                                           options=[("grpc.max_receive_message_length", _MAX_MESSAGE)])
                    entry = self._stubs[address] = (channel, rpc.WorldRuntimeStub(channel))
        return entry[1]

    def forget(self, address: str) -> None:
        """Drop the channel to ``address`` (its daemon was restarted): the next call connects afresh."""
        with self._lock:
            entry = self._stubs.pop(address, None)
        if entry is not None:
            entry[0].close()

    def call(self, op: Operation, request: Message, context: CallContext) -> Message:
        name = context.link_name(op.interface)
        link = self.links.resolve(context.source, op.interface, name)
        if link is None:
            named = "" if name == "default" else f" named {name!r}"
            option = "" if name == "default" else f" --name {name}"
            raise FailedPrecondition(f"component {context.source!r} has no link{named} for interface "
                                     f"{op.interface!r}; link it with: worldrt link put {op.interface}=PROVIDER{option}")
        provider = link.target_provider
        # What the caller waits for includes starting the provider's daemon when it is not running.
        started = time.perf_counter()
        try:
            address = self._address_of(provider)
        except WorldError as exc:
            raise Unavailable(f"provider {provider} is not available: {exc.message}") from exc
        startup_ms = (time.perf_counter() - started) * 1000
        method = getattr(self.stub(address), op.rpc)
        timeout = _timeout(op, request, context)
        try:
            reply, call = method.with_call(request, timeout=timeout, metadata=_metadata(context, self._token, link.name))
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            self._finish(context, op, provider, request, {"error": error.code.name, "message": error.message},
                         (time.perf_counter() - started) * 1000, startup_ms, cost_of(exc), error.code.name,
                         link.secret_values)
            raise error from None
        cost = cost_of(call)
        self._finish(context, op, provider, request, reply, (time.perf_counter() - started) * 1000, startup_ms, cost,
                     "", link.secret_values)
        return _costed(reply, cost)

    def stream(self, request: pb.ExecuteRequest, context: CallContext) -> Iterator[pb.ExecutionEvent]:
        """ExecuteStream on the provider of ``context.source``'s generator link, recorded (as
        ``execute_stream``, with its result) when the stream ends."""
        op = OPERATIONS[("generator", "execute")]
        link = self.links.resolve(context.source, op.interface, context.link_name(op.interface))
        if link is None:
            raise FailedPrecondition(f"{context.source!r} has no link for interface {op.interface!r}; link it with: "
                                     f"worldrt link put {op.interface}=PROVIDER")
        provider = link.target_provider
        started = time.perf_counter()
        try:
            address = self._address_of(provider)
        except WorldError as exc:
            raise Unavailable(f"provider {provider} is not available: {exc.message}") from exc
        startup_ms = (time.perf_counter() - started) * 1000
        streamed = Operation(op.interface, "execute_stream", "ExecuteStream", op.request, pb.ExecutionEvent)
        call = self.stub(address).ExecuteStream(request, timeout=_timeout(op, request, context),
                                                metadata=_metadata(context, self._token, link.name))
        result: Any = None
        try:
            for event in call:
                if event.HasField("result"):
                    result = event.result
                yield event
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            self._finish(context, streamed, provider, request, {"error": error.code.name, "message": error.message},
                         (time.perf_counter() - started) * 1000, startup_ms, cost_of(exc), error.code.name,
                         link.secret_values)
            raise error from None
        finally:
            call.cancel()
        self._finish(context, streamed, provider, request, result, (time.perf_counter() - started) * 1000,
                     startup_ms, cost_of(call), "", link.secret_values)

    def _finish(self, context: CallContext, op: Operation, provider: str, request: Message, result: Any,
                latency_ms: float, startup_ms: float, cost: float, error: str, secrets: tuple[str, ...]) -> None:
        self.registry.record_call(provider, op.name, str(context.verse_id), request, result, latency_ms, cost,
                                  time.time(), secrets, startup_ms)
        observer = self._observers.get(threading.get_ident())
        if observer is not None:
            observer(CallReport(op.interface, op.name, provider, latency_ms, cost, error, startup_ms))

    def close(self) -> None:
        with self._lock:
            for channel, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()


class DirectRouter(Router):
    """``targets`` maps an interface ("generator", ...) to a channel or an address (``unix:PATH``, ``HOST:PORT``)."""

    def __init__(self, targets: Mapping[str, grpc.Channel | str], *, token: str | None = None,
                 timeout_s: float = 60.0, tls: ClientTls | None = None) -> None:
        self._owned: list[grpc.Channel] = []
        self._stubs: dict[str, rpc.WorldRuntimeStub] = {}
        tls = tls if tls is not None else ClientTls.from_env()
        for interface, given in targets.items():
            target = given
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

    def call(self, op: Operation, request: Message, context: CallContext) -> Message:
        stub = self._stubs.get(op.interface)
        if stub is None:
            raise FailedPrecondition(f"no provider is set for interface {op.interface}")
        timeout = _timeout(op, request, context, self.timeout_s)
        try:
            reply, call = getattr(stub, op.rpc).with_call(request, timeout=timeout,
                                                          metadata=_metadata(context, self.token))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return _costed(reply, cost_of(call))

    def close(self) -> None:
        for channel in self._owned:
            channel.close()
        self._owned.clear()
