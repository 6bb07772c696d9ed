"""The RPCs of ``worldrt.v1.WorldRuntime`` as a table built from its service descriptor: an RPC added to the
contract is routed, carried across the lattice and recorded with no change here.

A call's registry row names its operation: the world's name for the RPCs a component imports (``execute``,
``write-files``; host/runtime/_world.py), else the RPC's name in kebab case (``build-image``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf import message_factory
from google.protobuf.message import Message

from worldrt.host.runtime import OPERATIONS
from worldrt.v1 import pb

SERVICE = pb.DESCRIPTOR.services_by_name["WorldRuntime"]


@dataclass(frozen=True)
class Method:
    rpc: str
    path: str
    request: type[Message]
    reply: type[Message]
    streaming: bool
    # The operation its registry rows name.
    operation: str


_WORLD_NAMES = {op.rpc: op.name for op in OPERATIONS.values()}
_WORLD_NAMES["ExecuteStream"] = "execute_stream"


def _kebab(rpc: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", rpc).lower()


METHODS: dict[str, Method] = {
    m.name: Method(m.name, f"/{SERVICE.full_name}/{m.name}", message_factory.GetMessageClass(m.input_type),
                   message_factory.GetMessageClass(m.output_type), bool(m.server_streaming),
                   _WORLD_NAMES.get(m.name, _kebab(m.name)))
    for m in SERVICE.methods if not m.client_streaming
}
