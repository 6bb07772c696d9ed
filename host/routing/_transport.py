"""Where a provider call runs, apart from what it does: a transport takes a call the router has resolved,
timed and will record, to a provider, and brings back its answer.

``Transport.reach(provider)`` gives a ``Target`` and the milliseconds spent making it ready (starting
the provider's daemon, if that is the transport's way; 0 when it was ready): the call's start-up wait. A target makes the call:
``unary`` answers a ``Reply``; ``stream`` yields the events and returns the ``Reply`` (its ``message`` is
the last event). A failure is raised as the ``WorldError`` kind of its status, with the cost and the
replica in its ``trailers`` (``x-worldrt-cost-units``, ``x-worldrt-replica``).

``LocalTransport`` reaches the host's own supervised daemons over their unix sockets, with the
supervisor's bearer token; the lattice's transport (host/lattice) reaches a replica on any host.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import Message

from worldrt.errors import WorldError, from_rpc_error
from worldrt.host.routing._methods import Method
from worldrt.host.routing._supervisor import Supervisor
from worldrt.providers import ClientTls, open_channel, serving
from worldrt.v1 import host_pb, rpc

log = logging.getLogger("worldrt.host")
_MAX_MESSAGE = 64 * 1024 * 1024
COST = "x-worldrt-cost-units"
REPLICA = "x-worldrt-replica"
Metadata = list[tuple[str, str]]


class Reply(NamedTuple):
    # The reply (a stream's last event; what a failed call's row keeps, for the router's own use).
    message: Any
    cost: float
    # The lattice replica that answered ("" for the host's own daemon).
    replica: str = ""


def cost_of(metadata: Iterable[tuple[str, Any]] | None) -> float:
    """The cost units a provider reported in a call's trailing metadata (0 when it reported none)."""
    try:
        for key, value in metadata or ():
            if key == COST:
                return float(value)
    except (ValueError, TypeError):
        pass
    return 0.0


def replica_of(metadata: Iterable[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        if key == REPLICA:
            return str(value)
    return ""


def provider_state(row: dict[str, Any]) -> host_pb.ProviderState:
    """A provider as the registry's ``providers`` row describes it."""
    return host_pb.ProviderState(
        provider_id=str(row["provider_id"]), name=str(row["name"]), trit=int(row["trit"] or 0),
        status=str(row["status"] or ""), address=str(row["address"] or ""), pid=int(row["pid"] or 0),
        restarts=int(row["restarts"] or 0), last_error=str(row["last_error"] or ""),
        api_endpoint=str(row["api_endpoint"] or ""))


class Target(ABC):
    """One provider as a transport reaches it."""

    @abstractmethod
    def unary(self, method: Method, request: Message, metadata: Metadata, timeout_s: float) -> Reply:
        """The reply of ``method``, or its failure raised as a WorldError kind."""

    @abstractmethod
    def stream(self, method: Method, request: Message, metadata: Metadata,
               timeout_s: float) -> Generator[Message, None, Reply]:
        """Each event of the streaming ``method`` as it arrives; then (as the generator's value) the Reply."""


class Transport(ABC):
    # What ``worldrt link put`` needs added to write the links this transport's calls follow.
    link_hint = ""

    @abstractmethod
    def reach(self, provider: str) -> tuple[Target, float]:
        """``provider`` ready to be called, and the ms that took; a WorldError kind when it cannot be."""

    @abstractmethod
    def healthy(self, provider: str) -> bool:
        """Whether a call to ``provider`` can be served now (starting its daemon if that is the transport's way)."""

    @abstractmethod
    def describe(self, provider: str) -> host_pb.ProviderState:
        """Where ``provider`` runs for this transport and how it is, without its capabilities."""

    def close(self) -> None:  # noqa: B027 - a transport without connections has nothing to release
        """Release what the transport holds."""


def _failure(exc: grpc.RpcError) -> WorldError:
    error = from_rpc_error(exc)
    trailers: Any = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    cost = cost_of(trailers)
    if cost:
        error.add_trailers((COST, str(cost)))
    return error


class _Channel(Target):
    def __init__(self, channel: grpc.Channel, token: str | None) -> None:
        self.channel = channel
        self._auth: Metadata = [("authorization", f"Bearer {token}")] if token else []
        self._calls: dict[str, Any] = {}

    def _callable(self, method: Method) -> Any:
        call = self._calls.get(method.rpc)
        if call is None:
            make = self.channel.unary_stream if method.streaming else self.channel.unary_unary
            call = self._calls[method.rpc] = make(method.path, request_serializer=method.request.SerializeToString,
                                                  response_deserializer=method.reply.FromString)
        return call

    def unary(self, method: Method, request: Message, metadata: Metadata, timeout_s: float) -> Reply:
        try:
            reply, call = self._callable(method).with_call(request, timeout=timeout_s, metadata=metadata + self._auth)
        except grpc.RpcError as exc:
            raise _failure(exc) from None
        return Reply(reply, cost_of(call.trailing_metadata()))

    def stream(self, method: Method, request: Message, metadata: Metadata,
               timeout_s: float) -> Generator[Message, None, Reply]:
        call = self._callable(method)(request, timeout=timeout_s, metadata=metadata + self._auth)
        last: Message = method.reply()
        try:
            for event in call:
                last = event
                yield event
        except grpc.RpcError as exc:
            raise _failure(exc) from None
        finally:
            call.cancel()
        return Reply(last, cost_of(call.trailing_metadata()))


class LocalTransport(Transport):
    """The host's own provider daemons, started by the supervisor when first reached."""

    def __init__(self, supervisor: Supervisor, *, tls: ClientTls | None = None) -> None:
        self.supervisor = supervisor
        self._tls = tls if tls is not None else ClientTls.from_env()
        self._targets: dict[str, _Channel] = {}
        self._lock = threading.Lock()

    def reach(self, provider: str) -> tuple[Target, float]:
        child = self.supervisor.alive(provider)
        if child is not None:
            return self.at(child.address), 0.0
        started = time.perf_counter()
        address = self.supervisor.address(provider)
        return self.at(address), (time.perf_counter() - started) * 1000

    def at(self, address: str) -> _Channel:
        """The target at a daemon's address (one channel per address, kept until ``forget``)."""
        target = self._targets.get(address)
        if target is None:
            with self._lock:
                target = self._targets.get(address)
                if target is None:
                    channel = open_channel(address, tls=self._tls, token=self.supervisor.token,
                                           options=[("grpc.max_receive_message_length", _MAX_MESSAGE)])
                    target = self._targets[address] = _Channel(channel, self.supervisor.token)
        return target

    def stub(self, provider: str) -> rpc.WorldRuntimeStub:
        """A plain stub of ``provider``'s daemon (started if need be), for benchmarks of the bare call; its
        calls need the supervisor's token as ``authorization`` metadata."""
        return rpc.WorldRuntimeStub(self.at(self.supervisor.address(provider)).channel)

    def forget(self, provider: str) -> None:
        """Drop the channel to ``provider``'s daemon (it was restarted): the next call connects afresh."""
        child = self.supervisor.child(provider)
        if child is None:
            return
        with self._lock:
            target = self._targets.pop(child.address, None)
        if target is not None:
            target.channel.close()

    def healthy(self, provider: str) -> bool:
        try:
            address = self.supervisor.ensure(provider).address
        except WorldError as exc:
            log.warning("provider %s cannot start: %s", provider, exc)
            return False
        return serving(address, timeout_s=2) is True

    def describe(self, provider: str) -> host_pb.ProviderState:
        registry = self.supervisor.registry  # None only before a host attached it
        rows = registry.providers() if registry is not None else []
        row = next((r for r in rows if r["provider_id"] == provider), None)
        if row is None:
            return host_pb.ProviderState(provider_id=provider, name=provider, status="unknown")
        return provider_state(row)

    def close(self) -> None:
        with self._lock:
            for target in self._targets.values():
                target.channel.close()
            self._targets.clear()
