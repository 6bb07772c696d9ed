"""What components and verses give back: the events a run reports as it goes, a component's outcome with
its output, and the pipeline, solo run, orchestration and selection results.

Invariants: every result keeps the host's whole answer in ``raw`` (JSON-shaped), so nothing the host
said is lost to a field this module does not know yet; typed fields are read from it once, here; an
event the client does not know is skipped, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldrt.client._types import Stream
from worldrt.v1 import host_pb


@dataclass(frozen=True)
class ProviderCall:
    """A call a component made to a provider: ``interface.operation`` → ``provider``, what it cost and how
    long the component waited (``startup_ms`` of it starting the provider's daemon); ``error`` names the
    status code of a failed call."""

    interface: str
    operation: str
    provider: str
    latency_ms: float
    cost_units: float
    error: str
    startup_ms: float

    @classmethod
    def of(cls, message: host_pb.ProviderCall) -> ProviderCall:
        """The call a ProviderCall message reports."""
        return cls(message.interface, message.operation, message.provider_id, message.latency_ms,
                   message.cost_units, message.error, message.startup_ms)


@dataclass(frozen=True)
class LogLine:
    """A line a component or the host logged during a run (``[LEVEL] text`` for a component's)."""

    text: str


@dataclass(frozen=True)
class ComponentOutput:
    """Bytes a component wrote to its ``stream`` ("stdout" or "stderr")."""

    stream: Stream
    data: bytes


Event = ProviderCall | LogLine | ComponentOutput
EventCallback = Callable[[Event], None]


def event_of(message: host_pb.InvokeEvent) -> Event | None:
    """The event an InvokeEvent reports; None for kinds that are not progress (results)."""
    kind = message.WhichOneof("event")
    if kind == "call":
        return ProviderCall.of(message.call)
    if kind == "log":
        return LogLine(message.log)
    if kind == "output":
        stream: Stream = "stderr" if message.output.stream == "stderr" else "stdout"
        return ComponentOutput(stream, message.output.data)
    return None


class EventLog:
    """Collects a run's calls and output while passing every event on to the caller's callback."""

    def __init__(self, on_event: EventCallback | None) -> None:
        self.on_event = on_event
        self.calls: list[ProviderCall] = []
        self.output: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def __call__(self, message: host_pb.InvokeEvent) -> None:
        event = event_of(message)
        if event is None:
            return
        if isinstance(event, ProviderCall):
            self.calls.append(event)
        elif isinstance(event, ComponentOutput):
            self.output[event.stream].extend(event.data)
        if self.on_event is not None:
            self.on_event(event)


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


@dataclass(frozen=True)
class ComponentOutcome:
    """A component's run: ``ok`` with the export's ok string, else its err string, as ``text``; ``value``
    is that text decoded from JSON when it is JSON (else the text itself). ``stdout`` and ``stderr`` are
    what the component wrote (up to the host's cap per run); ``calls`` the provider calls it made."""

    ok: bool
    value: Any
    text: str
    component: str
    duration_ms: float
    provider_calls: int
    stdout: bytes = b""
    stderr: bytes = b""
    calls: tuple[ProviderCall, ...] = ()

    @classmethod
    def of(cls, message: host_pb.InvokeOutcome, component: str, log: EventLog) -> ComponentOutcome:
        """The outcome of an invocation, with what ``log`` collected while it ran."""
        return cls(ok=message.ok, value=_decoded(message.value), text=message.value, component=component,
                   duration_ms=message.duration_ms, provider_calls=message.provider_calls,
                   stdout=bytes(log.output["stdout"]), stderr=bytes(log.output["stderr"]), calls=tuple(log.calls))


@dataclass(frozen=True)
class ComponentInspection:
    """What ``components.inspect`` finds: each import's functions and signatures, each export's signature,
    and ``problem``, why this host would refuse the component (None when it fits the world)."""

    path: Path
    size_bytes: int
    digest: str
    imports: Mapping[str, Mapping[str, str]]
    exports: Mapping[str, str]
    problem: str | None
    wit_versions: tuple[str, ...] = ()

    @classmethod
    def of(cls, info: Any) -> ComponentInspection:
        """From the host runtime's ``ComponentInfo``."""
        return cls(path=Path(info.path), size_bytes=info.size_bytes, digest=info.digest, imports=dict(info.imports),
                   exports=dict(info.exports), problem=info.problem,
                   wit_versions=tuple(getattr(info, "wit_versions", ())))


@dataclass(frozen=True)
class BuiltComponent:
    """A component file ``components.build`` made, the ``worldrt:verse`` version it was built against, and
    how long the toolchain took."""

    path: Path
    size_bytes: int
    seconds: float
    wit_version: str


@dataclass(frozen=True)
class Strategy:
    """A trading strategy a verse tried: its ``rule`` and ``params``, the ``value`` the oracle gave it,
    whether it was ``verified`` (None when no validator ran) and the optimizer's best value if one ran."""

    rule: str
    params: Mapping[str, Any]
    value: float
    verified: bool | None = None
    optimized_value: float | None = None
    instance_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Strategy | None:
        """From one entry of a run's result (None stays None)."""
        if not data:
            return None
        optimized = data.get("optimized") or {}
        return cls(rule=str(data.get("rule", "")), params=dict(data.get("params") or {}),
                   value=float(data.get("value", 0.0)), verified=data.get("verified"),
                   optimized_value=optimized.get("best_value"), instance_id=data.get("instance_id"), raw=dict(data))


def _strategies(result: Mapping[str, Any]) -> tuple[Strategy, ...]:
    return tuple(s for s in (Strategy.of(c) for c in result.get("candidates") or ()) if s is not None)


@dataclass(frozen=True)
class PipelineRun:
    """A pipeline's run: the ``baseline``, the branches' ``candidates``, the ``winner`` the oracle chose and
    ``wev`` (winner's value minus baseline's; None when either is missing), the providers and their
    trits with the GF(3) sum, its cost and duration; ``run_id`` names it in the registry."""

    run_id: str
    verse_id: int
    preset: str
    providers: tuple[str, ...]
    trits: tuple[int, ...]
    gf3_sum: int
    balanced: bool
    wev: float | None
    winner: Strategy | None
    baseline: Strategy | None
    candidates: tuple[Strategy, ...]
    cost_units: float
    duration_ms: float
    attestation: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> PipelineRun:
        """From RunVerse's pipeline answer."""
        result = data.get("result") or {}
        return cls(run_id=data["run_id"], verse_id=int(data["verse_id"]), preset=data["preset"],
                   providers=tuple(data.get("providers") or ()), trits=tuple(data.get("trits") or ()),
                   gf3_sum=int(data.get("gf3_sum", 0)), balanced=bool(data.get("balanced")), wev=data.get("wev"),
                   winner=Strategy.of(result.get("winner")), baseline=Strategy.of(result.get("baseline")),
                   candidates=_strategies(result), cost_units=float(data.get("cost_units", 0.0)),
                   duration_ms=float(data.get("duration_ms", 0.0)), attestation=result.get("attestation"), raw=data)


@dataclass(frozen=True)
class SoloRun:
    """One provider's role alone on a verse (``verse.run(id, on=...)``): what its role produced."""

    verse_id: int
    provider: str
    role: str
    trit: int
    winner: Strategy | None
    baseline: Strategy | None
    candidates: tuple[Strategy, ...]
    cost_units: float
    duration_ms: float
    attestation: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> SoloRun:
        """From RunVerse's solo answer."""
        result = data.get("result") or {}
        return cls(verse_id=int(data["verse_id"]), provider=data["provider"], role=data["role"],
                   trit=int(data["trit"]), winner=Strategy.of(result.get("winner")),
                   baseline=Strategy.of(result.get("baseline")), candidates=_strategies(result),
                   cost_units=float(data.get("cost_units", 0.0)), duration_ms=float(data.get("duration_ms", 0.0)),
                   attestation=result.get("attestation"), raw=data)


@dataclass(frozen=True)
class Orchestration:
    """A multiverse orchestration: the child verse MODE picked (``winner``, also ``observed``), each
    branch's value, what the owner pulled up, and whether each owner's payoff held (``invariant_held``)."""

    verse_id: int
    mode: str
    run_id: str
    winner: str
    branch_values: Mapping[str, float]
    owner: str
    stake: float
    pulled_up: float
    payoff_after_pull_up: float
    invariant_held: bool
    wev: float | None
    multiverse: str
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def observed(self) -> str:
        """The child verse the ledger resolved to (the same as ``winner``)."""
        return self.winner

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Orchestration:
        """From RunVerse's orchestrate answer."""
        return cls(verse_id=int(data["verse_id"]), mode=data["mode"], run_id=data["run_id"], winner=data["observed"],
                   branch_values=dict(data.get("branch_values") or {}), owner=data["owner"],
                   stake=float(data["stake"]), pulled_up=float(data["pulled_up"]),
                   payoff_after_pull_up=float(data["payoff_after_pull_up"]),
                   invariant_held=bool(data["invariant_held"]), wev=data.get("wev"), multiverse=data["multiverse"],
                   raw=data)


@dataclass(frozen=True)
class Selection:
    """The providers a preset would use now, role by role (``by_role``), and whether their trits balance."""

    preset: str
    providers: tuple[str, ...]
    by_role: Mapping[str, str]
    gf3_sum: int
    balanced: bool
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Selection:
        """From RunVerse's select answer."""
        return cls(preset=data["preset"], providers=tuple(data.get("providers") or ()),
                   by_role={r["role"]: r["provider"] for r in data.get("roles") or ()},
                   gf3_sum=int(data.get("gf3_sum", 0)), balanced=bool(data.get("balanced")), raw=data)
