"""What the component runtime needs from a router: the operations of the world, and the Router interface.

Each imported provider function of the WIT world maps to one ``worldrt.v1.WorldRuntime`` rpc with its
request and reply messages. A ``Router`` decides which provider serves a call (the host's
``LinkRouter`` resolves links; ``DirectRouter`` uses fixed addresses).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from google.protobuf.message import Message

from worldrt.v1 import pb

WIT_PACKAGE = "worldrt:verse"
WIT_VERSION = "0.1.0"
PROVIDER_INTERFACES: tuple[str, ...] = ("generator", "coordinator", "validator")
HOST_INTERFACES: tuple[str, ...] = ("lattice", "log", "types")
LOG_LEVELS: tuple[str, ...] = ("trace", "debug", "info", "warn", "error")


def wit_interface(name: str) -> str:
    """The fully qualified WIT name of one of the world's interfaces."""
    return f"{WIT_PACKAGE}/{name}@{WIT_VERSION}"


@dataclass(frozen=True)
class Operation:
    interface: str
    name: str
    rpc: str
    request: type[Message]
    reply: type[Message]


OPERATIONS: dict[tuple[str, str], Operation] = {
    (op.interface, op.name): op
    for op in (
        Operation("generator", "start", "Start", pb.StartRequest, pb.Instance),
        Operation("generator", "stop", "Stop", pb.InstanceRef, pb.Instance),
        Operation("generator", "snapshot", "Snapshot", pb.SnapshotRequest, pb.SnapshotRef),
        Operation("generator", "branch", "Branch", pb.BranchRequest, pb.BranchReply),
        Operation("generator", "execute", "Execute", pb.ExecuteRequest, pb.ExecutionResult),
        Operation("generator", "merge", "Merge", pb.MergeRequest, pb.Instance),
        Operation("generator", "write-files", "WriteFiles", pb.WriteFilesRequest, pb.WriteFilesReply),
        Operation("generator", "read-file", "ReadFileChunk", pb.ReadFileRequest, pb.FileChunk),
        Operation("generator", "list-files", "ListFiles", pb.ListFilesRequest, pb.ListFilesReply),
        Operation("coordinator", "optimize", "Optimize", pb.OptimizeRequest, pb.OptimizeReply),
        Operation("validator", "verify", "Verify", pb.VerifyRequest, pb.VerifyReply),
    )
}


@dataclass(frozen=True)
class CallContext:
    """Who is calling: the verse, the component (links are resolved for it) and this invocation.

    ``deadline`` (``time.monotonic()`` seconds; None for none) is when the invocation's time is up: a
    router gives no call a longer gRPC deadline than what remains (``remaining_s``)."""

    verse_id: int
    source: str
    invocation_id: str = ""
    deadline: float | None = None
    # The link each interface's calls use (set by the component through lattice.set-link-name).
    link_names: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def link_name(self, interface: str) -> str:
        return self.link_names.get(interface, "default")

    def remaining_s(self, limit_s: float) -> float:
        """The gRPC timeout for a call: ``limit_s``, or less when the invocation ends sooner (0 when over)."""
        if self.deadline is None:
            return limit_s
        return max(0.0, min(limit_s, self.deadline - time.monotonic()))


class Router(ABC):
    @abstractmethod
    def call(self, op: Operation, request: Message, context: CallContext) -> Message:
        """Make the provider call of ``op``; raise the WorldError kind of its failure when the provider
        (or the route) fails."""

    def close(self) -> None:  # noqa: B027 - a router without channels has nothing to release
        """Release channels."""
