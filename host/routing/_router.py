"""The one provider-call path of a host: every call to a provider goes through ``Router``.

A call is resolved once to a provider: through the caller's link (a component's import, CallProvider and
its stream: ``call`` and ``stream``) or by the provider named (files, images, capabilities, link
forwarding: ``send`` and ``send_stream``). Then, the same for all: the deadline is the smaller of the
operation's and what the invocation has left; the transport reaches the provider (the wait, when its
daemon had to start, is the call's start-up time) and makes the call; one registry row records it
(request, reply or error, latency, cost, start-up wait, the replica that answered) before the caller
sees the answer; and the invocation's observer hears of it. A failure is raised as the WorldError kind
of its status. With telemetry on (worldrt.telemetry), each call is a client span (provider, operation,
link, replica, start-up wait; its status the gRPC code) whose W3C context goes with the call's metadata,
and counts in ``worldrt_provider_calls_total`` and ``worldrt_provider_call_duration_seconds``.

The transport is the host's own supervised daemons (``LocalTransport``) or the lattice (host/lattice);
link forwarding always goes to the host's own daemons (``own=True``), since each host hands its providers
their links. Calls carry the verse id, the source component and the link name as metadata (a link's values
and secrets are link data, never a bearer token); the transport adds what it needs to reach the provider.

``DirectRouter`` calls fixed channels, one per interface, with no links and no registry: for tools,
tests and benchmarks that run components against one daemon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import Message

from worldrt import telemetry
from worldrt.errors import DeadlineExceeded, FailedPrecondition, Unavailable, WorldError
from worldrt.host.registry import Registry
from worldrt.host.routing._links import HostLink, LinkTable
from worldrt.host.routing._methods import METHODS, Method
from worldrt.host.routing._transport import Reply, Target, Transport, _Channel, cost_of, replica_of
from worldrt.host.runtime import CallContext, Operation
from worldrt.host.runtime import Router as WorldRouter
from worldrt.providers import ClientTls, open_channel
from worldrt.v1 import pb

DEFAULT_DEADLINE_S = 120.0
LONG_DEADLINE_S = 330.0
_LONG = frozenset({"Execute", "ExecuteStream", "Optimize", "Verify"})


class CallReport(NamedTuple):
    """One routed call as an observer hears of it; ``latency_ms`` includes ``startup_ms``; ``provider``
    is ``provider@replica`` when a lattice replica answered."""

    interface: str
    operation: str
    provider: str
    latency_ms: float
    cost_units: float
    error: str
    startup_ms: float


CallObserver = Callable[[CallReport], None]


class _Route(NamedTuple):
    provider: str
    method: Method
    interface: str
    link: HostLink | None


def _deadline_s(method: Method, request: Message) -> float:
    timeout_ms = getattr(request, "timeout_ms", 0)
    if timeout_ms and method.rpc in ("Execute", "ExecuteStream", "WaitProcess"):
        return timeout_ms / 1000 + 5.0
    return LONG_DEADLINE_S if method.rpc in _LONG else DEFAULT_DEADLINE_S


def _timeout(method: Method, interface: str, limit_s: float, context: CallContext | None) -> float:
    if context is None:
        return limit_s
    timeout = context.remaining_s(limit_s)
    if timeout <= 0:
        raise DeadlineExceeded(f"{context.source}'s invocation has no time left for {interface}.{method.operation}")
    return timeout


def _metadata(context: CallContext | None, link: HostLink | None) -> list[tuple[str, str]]:
    if context is None:
        return []
    metadata = [("x-worldrt-verse-id", str(context.verse_id)), ("x-worldrt-source", context.source)]
    if link is not None and link.name:
        metadata.append(("x-worldrt-link-name", link.name))
    return metadata


_SPAN_ATTRIBUTES: dict[tuple[str, str, str, str, str], dict[str, str | int | float | bool]] = {}


def _span(route: _Route, context: CallContext | None) -> telemetry.Span:
    """The call's client span (telemetry.NOOP while tracing is off); a route's attributes are built once."""
    if not telemetry.tracing():
        return telemetry.NOOP
    link = route.link
    key = (route.provider, route.method.rpc, route.interface, link.link_id if link else "", link.name if link else "")
    attributes = _SPAN_ATTRIBUTES.get(key)
    if attributes is None:
        # The span's name carries the RPC; each attribute costs the exporter a few microseconds a span.
        attributes = {"worldrt.provider": route.provider, "worldrt.operation": route.method.operation}
        if link is not None:
            attributes["worldrt.link"] = link.name or "default"
        if len(_SPAN_ATTRIBUTES) > 4096:  # links come and go: a bound, not a leak
            _SPAN_ATTRIBUTES.clear()
        _SPAN_ATTRIBUTES[key] = attributes
    traced = telemetry.span(route.method.path[1:], attributes, kind="client")
    if context is not None:
        traced.set("worldrt.source", context.source)
    return traced


def _costed(reply: Message, cost: float) -> Message:
    """An ExecutionResult shows the component its cost, which the provider sent in the trailer."""
    if isinstance(reply, pb.ExecutionResult):
        reply.cost_units = cost
    return reply


def _row_result(method: Method, last: Message) -> Message:
    """What a stream's row keeps: the result of an ExecuteStream, else its last event."""
    if isinstance(last, pb.ExecutionEvent) and last.HasField("result"):
        return last.result
    return last


class Router(WorldRouter):
    """Calls through ``transport``, resolving links in ``links`` and recording each call in ``registry``;
    ``own`` (default: ``transport``) reaches this host's own daemons, for link forwarding."""

    def __init__(self, links: LinkTable, registry: Registry, transport: Transport,
                 own: Transport | None = None) -> None:
        self.links = links
        self.registry = registry
        self.transport = transport
        self.own = own or transport
        self._observers: dict[int, CallObserver] = {}

    def observe(self, observer: CallObserver | None) -> None:
        """Report every call made on this thread (a CallReport): a component's imports run on the thread
        that invokes it."""
        if observer is None:
            self._observers.pop(threading.get_ident(), None)
        else:
            self._observers[threading.get_ident()] = observer

    # the caller's link --------------------------------------------------------------------------------
    def resolve(self, context: CallContext, interface: str) -> HostLink:
        """The link ``context.source``'s calls of ``interface`` follow; FailedPrecondition when there is none."""
        name = context.link_name(interface)
        link = self.links.resolve(context.source, interface, name)
        if link is None:
            named = "" if name == "default" else f" named {name!r}"
            option = "" if name == "default" else f" --name {name}"
            raise FailedPrecondition(f"component {context.source!r} has no link{named} for interface {interface!r}; "
                                     f"link it with: worldrt link put {interface}=PROVIDER{option}"
                                     f"{self.transport.link_hint}")
        return link

    def call(self, op: Operation, request: Message, context: CallContext) -> Message:
        link = self.resolve(context, op.interface)
        method = METHODS[op.rpc]
        route = _Route(link.target_provider, method, op.interface, link)
        return self._unary(route, request, context, _deadline_s(method, request), self.transport, True)

    def call_stream(self, op: Operation, request: Message, context: CallContext,
                    timeout_s: float) -> Iterator[Message]:
        """A component's bounded read of a streaming rpc (a pull: host/runtime/_pulls.py) over its link."""
        link = self.resolve(context, op.interface)
        return self._stream(_Route(link.target_provider, METHODS[op.rpc], op.interface, link), request, context,
                            timeout_s)

    def stream(self, request: pb.ExecuteRequest, context: CallContext) -> Iterator[pb.ExecutionEvent]:
        """ExecuteStream on the provider of ``context.source``'s generator link."""
        link = self.resolve(context, "generator")
        method = METHODS["ExecuteStream"]
        route = _Route(link.target_provider, method, "generator", link)
        return self._stream(route, request, context, _deadline_s(method, request))  # type: ignore[return-value]

    # a named provider -----------------------------------------------------------------------------------
    def send(self, provider: str, rpc: str, request: Message, *, timeout_s: float,
             context: CallContext | None = None, record: bool = True, own: bool = False) -> Message:
        """``rpc`` on ``provider`` (no link); ``own`` reaches this host's own daemon whatever the transport;
        ``record=False`` leaves no row (link forwarding: the host's business with its daemons)."""
        route = _Route(provider, METHODS[rpc], "provider", None)
        return self._unary(route, request, context, timeout_s, self.own if own else self.transport, record)

    def send_stream(self, provider: str, rpc: str, request: Message, *, timeout_s: float,
                    context: CallContext | None = None) -> Iterator[Message]:
        """The streaming ``rpc`` on ``provider``: its events as they arrive."""
        return self._stream(_Route(provider, METHODS[rpc], "provider", None), request, context, timeout_s)

    # the path ------------------------------------------------------------------------------------------
    def _reach(self, route: _Route, transport: Transport) -> tuple[Target, float, float]:
        """The target, when the call started, and its start-up wait (ms)."""
        started = time.perf_counter()
        try:
            target, startup_ms = transport.reach(route.provider)
        except WorldError as exc:
            raise Unavailable(f"provider {route.provider} is not available: {exc.message}") from exc
        return target, started, startup_ms

    def _unary(self, route: _Route, request: Message, context: CallContext | None, limit_s: float,
               transport: Transport, record: bool) -> Message:
        traced = _span(route, context)
        try:
            target, started, startup_ms = self._reach(route, transport)
            traced.set("worldrt.startup_ms", startup_ms)
            timeout = _timeout(route.method, route.interface, limit_s, context)
        except WorldError as error:
            traced.end(error)
            raise
        try:
            reply = target.unary(route.method, request, _metadata(context, route.link) + traced.carrier(), timeout)
        except WorldError as error:
            if record:
                self._failed(route, request, context, error, started, startup_ms, traced)
            traced.end(error)
            raise
        if record:
            self._record(route, request, context, reply, started, startup_ms, "", traced)
        traced.status(grpc.StatusCode.OK)
        traced.end()
        return _costed(reply.message, reply.cost)

    def _stream(self, route: _Route, request: Message, context: CallContext | None,
                limit_s: float) -> Generator[Message, None, None]:
        traced = _span(route, context)
        try:
            target, started, startup_ms = self._reach(route, self.transport)
            traced.set("worldrt.startup_ms", startup_ms)
            timeout = _timeout(route.method, route.interface, limit_s, context)
        except WorldError as error:
            traced.end(error)
            raise
        events = target.stream(route.method, request, _metadata(context, route.link) + traced.carrier(), timeout)
        last: Message | None = None
        try:
            while True:
                try:
                    event = next(events)
                except StopIteration as end:
                    reply: Reply = end.value
                    break
                last = event
                yield event
        except WorldError as error:
            self._failed(route, request, context, error, started, startup_ms, traced)
            traced.end(error)
            raise
        except GeneratorExit:  # the caller stopped reading: the call is cancelled, and recorded as such
            events.close()
            self._record(route, request, context, Reply(last, 0.0), started, startup_ms, "CANCELLED", traced)
            traced.status(grpc.StatusCode.CANCELLED, "the caller stopped reading the stream")
            traced.end()
            raise
        self._record(route, request, context, reply, started, startup_ms, "", traced)
        traced.status(grpc.StatusCode.OK)
        traced.end()

    def _failed(self, route: _Route, request: Message, context: CallContext | None, error: WorldError,
                started: float, startup_ms: float, traced: telemetry.Span = telemetry.NOOP) -> None:
        replica = replica_of(error.trailers)
        result: dict[str, Any] = {"error": error.code.name, "message": error.message}
        if replica:
            result["replica"] = replica
        self._record(route, request, context, Reply(result, cost_of(error.trailers), replica), started, startup_ms,
                     error.code.name, traced)

    def _record(self, route: _Route, request: Message, context: CallContext | None, reply: Reply, started: float,
                startup_ms: float, error: str, traced: telemetry.Span = telemetry.NOOP) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        result = reply.message
        if route.method.streaming and isinstance(result, Message):
            result = _row_result(route.method, result)
        secrets = route.link.secret_values if route.link is not None else ()
        if reply.replica:
            traced.set("worldrt.replica", reply.replica)
        self.registry.record_call(route.provider, route.method.operation,
                                  str(context.verse_id) if context is not None else "", request, result, latency_ms,
                                  reply.cost, time.time(), secrets, startup_ms, reply.replica)
        if telemetry.metrics_on():
            code = error or "OK"
            telemetry.inc("worldrt_provider_calls_total", route.provider, route.method.operation, code)
            telemetry.observe("worldrt_provider_call_duration_seconds", latency_ms / 1000, route.provider,
                              route.method.operation, code)
            if startup_ms:
                telemetry.observe("worldrt_provider_startup_wait_seconds", startup_ms / 1000, route.provider)
        observer = self._observers.get(threading.get_ident())
        if observer is not None:
            shown = f"{route.provider}@{reply.replica}" if reply.replica else route.provider
            observer(CallReport(route.interface, route.method.operation, shown, latency_ms, reply.cost, error,
                                startup_ms))

    def close(self) -> None:
        self.transport.close()
        if self.own is not self.transport:
            self.own.close()


class DirectRouter(WorldRouter):
    """``targets`` maps an interface ("generator", ...) to a channel or an address (``unix:PATH``, ``HOST:PORT``)."""

    def __init__(self, targets: Mapping[str, grpc.Channel | str], *, token: str | None = None,
                 timeout_s: float = 60.0, tls: ClientTls | None = None) -> None:
        self._owned: list[grpc.Channel] = []
        self._targets: dict[str, _Channel] = {}
        tls = tls if tls is not None else ClientTls.from_env()
        for interface, given in targets.items():
            channel = given
            if isinstance(channel, str):
                try:
                    channel = open_channel(channel, tls=tls, token=token)
                except BaseException:
                    self.close()
                    raise
                self._owned.append(channel)
            self._targets[interface] = _Channel(channel, token)
        self.timeout_s = timeout_s

    def call(self, op: Operation, request: Message, context: CallContext) -> Message:
        target = self._targets.get(op.interface)
        if target is None:
            raise FailedPrecondition(f"no provider is set for interface {op.interface}")
        method = METHODS[op.rpc]
        reply = target.unary(method, request, _metadata(context, None),
                             _timeout(method, op.interface, self.timeout_s, context))
        return _costed(reply.message, reply.cost)

    def call_stream(self, op: Operation, request: Message, context: CallContext,
                    timeout_s: float) -> Iterator[Message]:
        target = self._targets.get(op.interface)
        if target is None:
            raise FailedPrecondition(f"no provider is set for interface {op.interface}")
        method = METHODS[op.rpc]
        return target.stream(method, request, _metadata(context, None),
                             _timeout(method, op.interface, timeout_s, context))

    def close(self) -> None:
        for channel in self._owned:
            channel.close()
        self._owned.clear()
