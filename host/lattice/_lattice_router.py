"""The lattice router: a component's call goes over NATS to a replica of its linked provider.

The link is resolved at every call from the host's link table, which the links bucket keeps up to date.
The request travels as its protobuf bytes with the verse id, source and link name and the remaining
deadline; a call that names an instance or snapshot reaches the replica that owns it
(host/lattice/_calls.py). The answer's status code and message are the provider's own; the replica that
answered is reported to the invocation's observer as ``provider@replica``. Each call is recorded in the
registry (and so published to the lattice's stream) before its reply reaches the component.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from google.protobuf.message import Message

from worldrt.errors import FailedPrecondition, from_status
from worldrt.host.lattice._calls import Answer, bound_of
from worldrt.host.lattice._links import LinkTable
from worldrt.host.lattice._member import Member
from worldrt.host.lattice._routers import CallReport, LinkRouter, _costed, _metadata, _timeout
from worldrt.host.lattice._wire import METHODS, SILENCE_S, first_id, replicas_named
from worldrt.host.registry import Registry
from worldrt.host.runtime import OPERATIONS, CallContext, Operation
from worldrt.v1 import pb


def _nowhere(provider: str) -> str:
    raise FailedPrecondition(f"a lattice host reaches {provider} over the lattice, not at a local address")


class LatticeRouter(LinkRouter):
    def __init__(self, links: LinkTable, registry: Registry, member: Member) -> None:
        super().__init__(links, registry, _nowhere)
        self.member = member

    def remote(self, provider: str, rpc: str, request: Message, metadata: list[tuple[str, str]], timeout_s: float,
               on_event: Callable[[bytes], None] | None = None) -> Answer:
        """Call ``rpc`` of ``provider`` on the lattice (for an RPC of the contract, not only the world's)."""
        method = METHODS[rpc]
        bound = bound_of(replicas_named(request), first_id(request), provider, rpc)
        lattice = self.member.lattice
        return lattice.run(self.member.caller.call(provider, method, request.SerializeToString(), metadata,
                                                   timeout_s, bound=bound, on_event=on_event),
                           timeout_s=timeout_s + SILENCE_S * 4 + 5)

    def call(self, op: Operation, request: Message, context: CallContext) -> Message:
        name = context.link_name(op.interface)
        link = self.links.resolve(context.source, op.interface, name)
        if link is None:
            named = "" if name == "default" else f" named {name!r}"
            option = "" if name == "default" else f" --name {name}"
            raise FailedPrecondition(f"component {context.source!r} has no link{named} for interface "
                                     f"{op.interface!r} on the lattice; link it with: worldrt link put "
                                     f"{op.interface}=PROVIDER{option} --lattice URL")
        provider = link.target_provider
        timeout = _timeout(op, request, context)
        started = time.perf_counter()
        answer = self.remote(provider, op.rpc, request, _metadata(context, None, link.name), timeout)
        latency_ms = (time.perf_counter() - started) * 1000
        replica = f"{provider}@{answer.replica}"
        if answer.code.value[0] != 0:
            error = from_status(answer.code, answer.message)
            error.trailers = (("x-worldrt-replica", answer.replica),)
            self._finish(context, op, provider, request, {"error": error.code.name, "message": error.message,
                                                          "replica": answer.replica},
                         latency_ms, 0.0, answer.cost, error.code.name, link.secret_values, replica)
            raise error
        reply = op.reply.FromString(answer.data)
        self._finish(context, op, provider, request, reply, latency_ms, 0.0, answer.cost, "", link.secret_values, replica)
        return _costed(reply, answer.cost)

    def stream(self, request: pb.ExecuteRequest, context: CallContext) -> Iterator[pb.ExecutionEvent]:
        """ExecuteStream on a replica of the generator link's provider: its events as they arrive over NATS."""
        op = OPERATIONS[("generator", "execute")]
        link = self.links.resolve(context.source, op.interface, context.link_name(op.interface))
        if link is None:
            raise FailedPrecondition(f"{context.source!r} has no link for interface {op.interface!r} on the lattice; "
                                     f"link it with: worldrt link put {op.interface}=PROVIDER --lattice URL")
        provider = link.target_provider
        streamed = Operation(op.interface, "execute_stream", "ExecuteStream", op.request, pb.ExecutionEvent)
        items: queue.SimpleQueue[pb.ExecutionEvent | Answer | Exception] = queue.SimpleQueue()

        def run() -> None:
            try:
                items.put(self.remote(provider, "ExecuteStream", request, _metadata(context, None, link.name),
                                      _timeout(op, request, context),
                                      on_event=lambda data: items.put(pb.ExecutionEvent.FromString(data))))
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread and raised there
                items.put(exc)

        started = time.perf_counter()
        threading.Thread(target=run, name=f"stream-{provider}", daemon=True).start()
        result: pb.ExecutionResult | None = None
        while not isinstance(item := items.get(), Answer):
            if isinstance(item, Exception):
                raise item
            if item.HasField("result"):
                result = item.result
            yield item
        latency_ms = (time.perf_counter() - started) * 1000
        replica = f"{provider}@{item.replica}"
        if item.code.value[0] != 0:
            error = from_status(item.code, item.message)
            self._finish(context, streamed, provider, request, {"error": error.code.name, "message": error.message,
                                                                "replica": item.replica},
                         latency_ms, 0.0, item.cost, error.code.name, link.secret_values, replica)
            raise error
        self._finish(context, streamed, provider, request, result, latency_ms, 0.0, item.cost, "", link.secret_values,
                     replica)

    def _finish(self, context: CallContext, op: Operation, provider: str, request: Message, result: object,
                latency_ms: float, startup_ms: float, cost: float, error: str, secrets: tuple[str, ...],
                replica: str = "") -> None:
        self.registry.record_call(provider, op.name, str(context.verse_id), request, result, latency_ms, cost,
                                  time.time(), secrets, startup_ms)
        observer = self._observers.get(threading.get_ident())
        if observer is not None:
            observer(CallReport(op.interface, op.name, replica or provider, latency_ms, cost, error, startup_ms))


def capabilities(router: LatticeRouter, provider: str) -> pb.CapabilitiesReply:
    answer = router.remote(provider, "Capabilities", pb.CapabilitiesRequest(), [], 10.0)
    if answer.code.value[0] != 0:
        raise from_status(answer.code, answer.message)
    return pb.CapabilitiesReply.FromString(answer.data)
