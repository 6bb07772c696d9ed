"""What the component runtime needs from a router: the operations of the world, and the Router interface.

Each imported provider function of the WIT world maps to one ``worldrt.v1.WorldRuntime`` rpc with its
request and reply messages. The host serves every released version of the world at once
(``WIT_VERSIONS``), each interface under each version's name. 0.1.0's text is its first release; the
file functions and fields that were added to it in place before 0.2.0 existed stay served under 0.1.0
too, so no component that ever loaded stops loading; what is added later is served from its version on
(``Operation.since``). A ``Router`` decides which provider serves a call (the host's router resolves
links, host/routing; ``DirectRouter`` uses fixed channels).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

from google.protobuf.message import Message

from worldrt.errors import Unimplemented
from worldrt.host.runtime._pulls import ProcessOutput, ReadProcessOutputPull, WatchFilesOutput, WatchFilesPull
from worldrt.v1 import pb

WIT_PACKAGE = "worldrt:verse"
WIT_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0")
WIT_VERSION = WIT_VERSIONS[-1]  # the latest: what components are built against unless they ask for another
PROVIDER_INTERFACES: tuple[str, ...] = ("generator", "coordinator", "validator")
HOST_INTERFACES: tuple[str, ...] = ("lattice", "log", "types")
LOG_LEVELS: tuple[str, ...] = ("trace", "debug", "info", "warn", "error")


def wit_interface(name: str, version: str = WIT_VERSION) -> str:
    """The fully qualified WIT name of one of the world's interfaces, at ``version``."""
    return f"{WIT_PACKAGE}/{name}@{version}"


def interface_version(qualified: str) -> tuple[str, str] | None:
    """``("generator", "0.1.0")`` for ``worldrt:verse/generator@0.1.0``; None for a name of another package
    or a version this host does not serve."""
    package, _, rest = qualified.partition("/")
    name, _, version = rest.partition("@")
    if package != WIT_PACKAGE or version not in WIT_VERSIONS:
        return None
    return name, version


@dataclass(frozen=True)
class Operation:
    """An imported function and the rpc that serves it. ``since`` is the first version of the world that
    has it (older versions do not serve it); a ``pull`` reads a server-streaming rpc within bounds, its
    request and reply the pull's own messages (host/runtime/_pulls.py)."""

    interface: str
    name: str
    rpc: str
    request: type[Message]
    reply: type[Message]
    since: str = WIT_VERSIONS[0]
    pull: bool = False

    def served_in(self, version: str) -> bool:
        return WIT_VERSIONS.index(version) >= WIT_VERSIONS.index(self.since)


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
        Operation("generator", "stat-file", "StatFile", pb.StatFileRequest, pb.FileInfo, "0.2.0"),
        Operation("generator", "make-directory", "MakeDirectory", pb.MakeDirectoryRequest, pb.MakeDirectoryReply,
                  "0.2.0"),
        Operation("generator", "move-file", "MoveFile", pb.MoveFileRequest, pb.FileInfo, "0.2.0"),
        Operation("generator", "remove-file", "RemoveFile", pb.RemoveFileRequest, pb.RemoveFileReply, "0.2.0"),
        Operation("generator", "watch-files", "WatchFiles", WatchFilesPull, WatchFilesOutput, "0.2.0", pull=True),
        Operation("generator", "start-process", "StartProcess", pb.StartProcessRequest, pb.ProcessInfo, "0.2.0"),
        Operation("generator", "read-process-output", "ReadProcessOutput", ReadProcessOutputPull, ProcessOutput,
                  "0.2.0", pull=True),
        Operation("generator", "write-process-stdin", "WriteProcessStdin", pb.WriteProcessStdinRequest,
                  pb.WriteProcessStdinReply, "0.2.0"),
        Operation("generator", "wait-process", "WaitProcess", pb.WaitProcessRequest, pb.ProcessInfo, "0.2.0"),
        Operation("generator", "signal-process", "SignalProcess", pb.SignalProcessRequest, pb.ProcessInfo, "0.2.0"),
        Operation("generator", "list-processes", "ListProcesses", pb.ListProcessesRequest, pb.ListProcessesReply,
                  "0.2.0"),
        Operation("coordinator", "optimize", "Optimize", pb.OptimizeRequest, pb.OptimizeReply),
        Operation("validator", "verify", "Verify", pb.VerifyRequest, pb.VerifyReply),
    )
}


@dataclass(frozen=True)
class CallContext:
    """Who is calling: the verse, the component (links are resolved for it) and this invocation.

    ``deadline`` (``time.monotonic()`` seconds; None for none) is when the invocation's time is up: a
    router gives no call a longer gRPC deadline than what remains (``remaining_s``)."""

    # The verse's number; a label (such as "benchmark") for calls made outside any verse.
    verse_id: int | str
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

    def call_stream(self, op: Operation, request: Message, context: CallContext,
                    timeout_s: float) -> Iterator[Message]:
        """The server-streaming rpc of ``op`` on the provider ``call`` would reach, with a gRPC deadline of
        ``timeout_s`` (or less: what the invocation has left); closing the iterator cancels the call. A
        router without streams answers Unimplemented."""
        raise Unimplemented(f"this host's router does not stream, so {op.interface}.{op.name} is not served")

    def close(self) -> None:  # noqa: B027 - a router without channels has nothing to release
        """Release channels."""
