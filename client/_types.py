"""What the client's instance, file, image, link, provider and registry calls return: plain frozen values
decoded from the Host API's messages.

Invariants: each value is made by its ``of`` constructor from one message the host sent, whole; ids are
opaque strings (a lattice's look like ``i-…@replica``) handed back unchanged; times are aware
datetimes in UTC (None where the host sent none); what a message leaves unset is the field's zero value,
except ``ExecResult.value``, which is None when the code ended in no value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from worldrt.errors import WorldError, kind_of
from worldrt.v1 import host_pb, pb

Stream = Literal["stdout", "stderr"]


def when(stamp: Timestamp) -> datetime | None:
    """A protobuf Timestamp as an aware UTC datetime; None when it is unset."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=UTC)


@dataclass(frozen=True)
class Limits:
    """What an instance may use; 0 means the provider's default (or its link's ``--set NAME=N``)."""

    memory_mb: int = 0
    cpu_s: int = 0
    processes: int = 0
    file_size_mb: int = 0
    disk_mb: int = 0

    def to_pb(self) -> pb.Limits:
        """The contract's ``Limits`` message."""
        return pb.Limits(memory_mb=self.memory_mb, cpu_s=self.cpu_s, processes=self.processes,
                         file_size_mb=self.file_size_mb, disk_mb=self.disk_mb)

    @classmethod
    def of(cls, message: pb.Limits) -> Limits:
        """The limits a message carries."""
        return cls(message.memory_mb, message.cpu_s, message.processes, message.file_size_mb, message.disk_mb)


def _value(text: str) -> Any:
    """A run's value from its JSON; the text itself if a provider sent something that is not JSON."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class ExecResult:
    """One run's outcome. ``value`` is the code's final expression decoded from JSON (REPL style; None
    when it ended in none), ``error`` the exception it raised ("" when none); a run that raised or
    exited non-zero is still a result, never an exception."""

    stdout: str
    stderr: str
    exit_code: int
    value: Any
    duration_ms: float
    cpu_ms: float = 0.0
    cost_units: float = 0.0
    error: str = ""
    instance_id: str = ""
    value_json: str = ""

    @property
    def ok(self) -> bool:
        """True when the run exited 0 and raised nothing."""
        return self.exit_code == 0 and not self.error

    @classmethod
    def of(cls, message: pb.ExecutionResult) -> ExecResult:
        """The result an ExecutionResult message carries."""
        text = message.value_json
        return cls(stdout=message.stdout, stderr=message.stderr, exit_code=message.exit_code,
                   value=_value(text), duration_ms=message.duration_ms,
                   cpu_ms=message.cpu_ms, cost_units=message.cost_units, error=message.error,
                   instance_id=message.instance_id, value_json=text)


@dataclass(frozen=True)
class Output:
    """Text a streamed run wrote, as it came: to ``stream`` ("stdout" or "stderr")."""

    stream: Stream
    text: str


@dataclass(frozen=True)
class InstanceInfo:
    """What a provider said of an instance when it started, branched, merged or was listed."""

    id: str
    provider: str
    snapshot_id: str
    image: str
    running: bool
    created_at: datetime | None
    metadata: Mapping[str, str]
    limits: Limits

    @classmethod
    def of(cls, message: pb.Instance, provider: str) -> InstanceInfo:
        """The instance a message describes (``provider`` where the message names none)."""
        return cls(id=message.instance_id, provider=message.provider_id or provider, snapshot_id=message.snapshot_id,
                   image=message.image, running=message.status != pb.STOPPED, created_at=when(message.created_at),
                   metadata=dict(message.metadata), limits=Limits.of(message.limits))


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot: ``kind`` "memory_and_disk" (morph) or "disk_only" (modal)."""

    id: str
    instance_id: str
    provider: str
    kind: str
    size_bytes: int
    image: str
    created_at: datetime | None

    @classmethod
    def of(cls, message: pb.SnapshotRef, provider: str) -> SnapshotInfo:
        """The snapshot a SnapshotRef describes."""
        kind = pb.SnapshotKind.Name(message.kind).lower() if message.kind else ""
        return cls(id=message.snapshot_id, instance_id=message.instance_id, provider=provider, kind=kind,
                   size_bytes=message.size_bytes, image=message.image, created_at=when(message.created_at))


def branch_failure(reply: pb.BranchReply, count: int) -> WorldError | None:
    """The error of a Branch that made fewer than ``count`` instances: the kind of its first failure's
    code, saying what each failed branch answered; None when every branch was made."""
    if not reply.errors and len(reply.instances) == count:
        return None
    codes = [e.code for e in reply.errors] or ["ABORTED"]
    kind = kind_of(grpc.StatusCode[codes[0]] if codes[0] in grpc.StatusCode.__members__ else grpc.StatusCode.ABORTED)
    said = "; ".join(f"branch {e.index}: {e.code}: {e.message}" for e in reply.errors) or "no reason given"
    return kind(f"branch made {len(reply.instances)} of {count} instances ({said}); the ones made were stopped")


@dataclass(frozen=True)
class FileInfo:
    """An entry of an instance's workspace: ``kind`` is "file", "dir" or "symlink"; ``path`` is relative to
    /workspace."""

    name: str
    path: str
    size: int
    mode: int
    kind: str
    modified_at: datetime | None

    @classmethod
    def of(cls, message: pb.FileInfo) -> FileInfo:
        """The entry a FileInfo message describes."""
        return cls(message.name, message.path, message.size, message.mode, message.kind, when(message.modified_at))


@dataclass(frozen=True)
class Image:
    """A read-only layer instances start from, addressed by ``digest``; ``names`` are what it is known by."""

    digest: str
    names: tuple[str, ...]
    python: str
    packages: tuple[str, ...]
    requested: tuple[str, ...]
    size_bytes: int
    created_at: datetime | None
    source: str = ""
    files: Mapping[str, str] = field(default_factory=dict)
    cached: bool = False
    build_s: float = 0.0

    @classmethod
    def of(cls, message: pb.Image) -> Image:
        """The image a message describes."""
        return cls(digest=message.digest, names=tuple(message.names), python=message.python,
                   packages=tuple(message.packages), requested=tuple(message.requested),
                   size_bytes=message.size_bytes, created_at=when(message.created_at), source=message.source,
                   files=dict(message.files), cached=message.cached, build_s=message.build_s)


@dataclass(frozen=True)
class BuildProgress:
    """A step of an image build: its ``stage``, a line saying what happens, and how far it is (0 to 1)."""

    stage: str
    message: str
    fraction: float

    @classmethod
    def of(cls, message: pb.BuildProgress) -> BuildProgress:
        """The step a BuildProgress message reports."""
        return cls(message.stage, message.message, message.fraction)


@dataclass(frozen=True)
class Link:
    """A link from a source component's interfaces to a provider; secret values are never read back, only
    their names (``secret_keys``)."""

    link_id: str
    source: str
    interfaces: tuple[str, ...]
    name: str
    provider: str
    values: Mapping[str, str] = field(default_factory=dict)
    secret_keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, message: pb.LinkConfig) -> Link:
        """The link a LinkConfig describes (its secrets by name only)."""
        return cls(link_id=message.link_id, source=message.source_component, interfaces=tuple(message.interfaces),
                   name=message.name, provider=message.target_provider, values=dict(message.values),
                   secret_keys=tuple(sorted(message.secrets)))


@dataclass(frozen=True)
class ProviderState:
    """A provider as the host's registry knows it; ``languages``, ``operations`` and ``capabilities`` are
    filled when the provider was asked just now (``client.providers.status``)."""

    provider_id: str
    name: str
    trit: int
    status: str
    address: str
    pid: int
    restarts: int
    last_error: str
    languages: tuple[str, ...] = ()
    operations: tuple[str, ...] = ()
    capabilities: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, message: host_pb.ProviderState) -> ProviderState:
        """The state a ProviderState message reports."""
        caps = message.capabilities
        return cls(provider_id=message.provider_id, name=message.name, trit=message.trit, status=message.status,
                   address=message.address, pid=message.pid, restarts=message.restarts,
                   last_error=message.last_error, languages=tuple(caps.languages), operations=tuple(caps.operations),
                   capabilities={c.name: json.loads(c.value_json) for c in caps.capabilities})


@dataclass(frozen=True)
class Invocation:
    """One provider call the registry recorded: ``latency_ms`` is what the caller waited, of which
    ``startup_ms`` went to starting the provider's daemon; ``replica`` is the lattice host whose replica
    answered ("" when the host's own daemon did)."""

    invocation_id: str
    provider: str
    operation: str
    verse_id: str
    input_params: str
    output_result: str
    latency_ms: float
    cost_units: float
    invoked_at: str
    startup_ms: float
    replica: str = ""

    @classmethod
    def of(cls, message: host_pb.InvocationRow) -> Invocation:
        """The call an InvocationRow records."""
        return cls(message.invocation_id, message.provider_id, message.operation, message.verse_id,
                   message.input_params, message.output_result, message.latency_ms, message.cost_units,
                   message.invoked_at, message.startup_ms, message.replica)


@dataclass(frozen=True)
class Oracle:
    """How a merge picks its survivor: ``winner`` (an instance id) if given, else the instance whose score
    is the highest (``rule="max"``) or lowest (``"min"``). Scores are keyed by instance id."""

    scores: Mapping[str, float] = field(default_factory=dict)
    rule: Literal["max", "min"] = "max"
    winner: str = ""

    def to_pb(self) -> pb.OracleResult:
        """The contract's OracleResult message."""
        return pb.OracleResult(rule=self.rule, scores=dict(self.scores), winner_id=self.winner)


ProcessState = Literal["running", "exited", "killed", "timed_out"]
_PROCESS_STATES: dict[int, ProcessState] = {pb.PROCESS_RUNNING: "running", pb.PROCESS_EXITED: "exited",
                                            pb.PROCESS_KILLED: "killed", pb.PROCESS_TIMED_OUT: "timed_out"}


@dataclass(frozen=True)
class ProcessStatus:
    """A process as its provider last described it. ``state`` is "running", "exited" (``exit_code`` says
    how), "killed" (by ``signal``: a signal sent, the instance's end, or its own doing) or "timed_out"
    (killed with ``signal`` at its timeout). Sizes are the bytes written to each stream so far; the first
    offsets, the oldest still kept (older output was dropped past the provider's cap)."""

    id: str
    instance_id: str
    state: ProcessState
    exit_code: int
    signal: int
    argv: tuple[str, ...]
    tag: str
    pid: int
    cwd: str
    started_at: datetime | None
    ended_at: datetime | None
    stdout_size: int
    stderr_size: int
    stdout_first_offset: int
    stderr_first_offset: int
    stdin_open: bool
    output_ended: bool
    reason: str

    @property
    def running(self) -> bool:
        """True while the process runs."""
        return self.state == "running"

    @property
    def ok(self) -> bool:
        """True when it exited by itself with status 0."""
        return self.state == "exited" and self.exit_code == 0

    @classmethod
    def of(cls, message: pb.ProcessInfo) -> ProcessStatus:
        """The process a ProcessInfo message describes."""
        return cls(id=message.process_id, instance_id=message.instance_id,
                   state=_PROCESS_STATES.get(message.state, "running"), exit_code=message.exit_code,
                   signal=message.signal, argv=tuple(message.argv), tag=message.tag, pid=message.pid, cwd=message.cwd,
                   started_at=when(message.started_at), ended_at=when(message.ended_at),
                   stdout_size=message.stdout_size, stderr_size=message.stderr_size,
                   stdout_first_offset=message.stdout_first_offset, stderr_first_offset=message.stderr_first_offset,
                   stdin_open=message.stdin_open, output_ended=message.output_ended, reason=message.reason)


@dataclass(frozen=True)
class ProcessChunk:
    """Bytes a process wrote to ``stream`` ("stdout" or "stderr"), the first of them at ``offset`` in it."""

    stream: Stream
    offset: int
    data: bytes


FileEventKind = Literal["ready", "create", "modify", "remove", "rename", "chmod", "overflow", "ended"]


@dataclass(frozen=True)
class FileEvent:
    """A change a watch saw: ``kind`` "create", "modify", "remove", "rename" (``path`` the new name,
    ``old_path`` the old), "chmod", "overflow" (``dropped`` events were lost) or "ready" (the watch is in
    place). Paths are relative to /workspace."""

    kind: FileEventKind
    path: str
    old_path: str = ""
    is_dir: bool = False
    dropped: int = 0
    message: str = ""

    @classmethod
    def of(cls, message: pb.FileWatchEvent) -> FileEvent:
        """The change a FileWatchEvent reports."""
        name = pb.FileEventKind.Name(message.kind).removeprefix("FILE_EVENT_").lower()
        return cls(cast(FileEventKind, name), message.path, message.old_path, message.is_dir, message.dropped,
                   message.message)
