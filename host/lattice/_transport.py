"""The lattice as a host's transport: the router's call goes over NATS to a replica of its provider.

The request travels as its protobuf bytes with the call's metadata (verse id, source, link name) and the
remaining deadline; a call that names an instance or snapshot reaches the replica that owns it
(host/lattice/_calls.py), any other call any healthy replica. The answer's status code and message are
the provider's own; the replica that answered comes back with it (and in a failure's trailers), so the
router records it. A streaming call's events arrive on the lattice's loop and are handed to the caller's
thread as they come.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator

from google.protobuf.message import Message

from worldrt.errors import from_status
from worldrt.host.lattice._calls import Answer, bound_of
from worldrt.host.lattice._member import Member
from worldrt.host.lattice._wire import SILENCE_S, first_id, replicas_named
from worldrt.host.routing import COST, REPLICA, Metadata, Method, Reply, Target, Transport
from worldrt.v1 import host_pb


class LatticeTransport(Transport):
    link_hint = " --lattice URL"

    def __init__(self, member: Member) -> None:
        self.member = member

    def reach(self, provider: str) -> tuple[Target, float]:
        return _Replicas(self.member, provider), 0.0

    def healthy(self, provider: str) -> bool:
        return bool(self.member.fresh_replicas(provider))

    def describe(self, provider: str) -> host_pb.ProviderState:
        replicas = self.member.fresh_replicas(provider)
        return host_pb.ProviderState(provider_id=provider, name=provider,
                                     status="available" if replicas else "unavailable",
                                     address=f"lattice {self.member.lattice.name}: {', '.join(sorted(replicas))}")


class _Replicas(Target):
    def __init__(self, member: Member, provider: str) -> None:
        self.member = member
        self.provider = provider

    def _call(self, method: Method, request: Message, metadata: Metadata, timeout_s: float,
              on_event: object = None) -> Answer:
        bound = bound_of(replicas_named(request), first_id(request), self.provider, method.rpc)
        lattice = self.member.lattice
        return lattice.run(self.member.caller.call(self.provider, method, request.SerializeToString(), metadata,
                                                   timeout_s, bound=bound, on_event=on_event),  # type: ignore[arg-type]
                           timeout_s=timeout_s + SILENCE_S * 4 + 5)

    @staticmethod
    def _checked(answer: Answer) -> None:
        if answer.code.value[0] != 0:
            error = from_status(answer.code, answer.message, reason=answer.reason)
            error.add_trailers((REPLICA, answer.replica), (COST, str(answer.cost)))
            raise error

    def unary(self, method: Method, request: Message, metadata: Metadata, timeout_s: float) -> Reply:
        answer = self._call(method, request, metadata, timeout_s)
        self._checked(answer)
        return Reply(method.reply.FromString(answer.data), answer.cost, answer.replica)

    def stream(self, method: Method, request: Message, metadata: Metadata,
               timeout_s: float) -> Generator[Message, None, Reply]:
        items: queue.SimpleQueue[bytes | Answer | BaseException] = queue.SimpleQueue()

        def run() -> None:
            try:
                items.put(self._call(method, request, metadata, timeout_s, on_event=items.put))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread and raised there
                items.put(exc)

        threading.Thread(target=run, name=f"stream-{self.provider}", daemon=True).start()
        last: Message = method.reply()
        while True:
            item = items.get()  # bounded: the call's own deadline ends it with an Answer or an error
            if isinstance(item, Answer):
                break
            if isinstance(item, BaseException):
                raise item
            last = method.reply.FromString(item)
            yield last
        self._checked(item)
        return Reply(last, item.cost, item.replica)
