"""morph: the contract's generator with branching, served by the local Infinibranch engine."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from worldrt.v1 import pb

from .. import _errors as err
from .._metering import PriceTable
from .._provider import Call, Provider, ProviderOptions
from ..sandbox import Limits
from ._engine import Done, FrozenSnapshot, Infinibranch, LiveInstance, Output

MAX_LIMITS = Limits(memory_mb=64 * 1024, cpu_s=24 * 3600, processes=4096, file_size_mb=64 * 1024)
_TOOLCHAINS = {"js": ("node",), "cpp": ("g++",)}


def available_languages() -> list[str]:
    """python and shell always; others only where their toolchain is installed under /usr (visible inside)."""
    found = ["python", "shell"]
    for language, tools in _TOOLCHAINS.items():
        paths = [shutil.which(t, path="/usr/local/bin:/usr/bin:/bin") for t in tools]
        if all(p and os.path.realpath(p).startswith("/usr/") for p in paths):
            found.append(language)
    return found


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def limits_from(request: pb.Limits | None) -> Limits:
    """Limits from a request: 0 means the default; negative or above the maximum is an error."""
    default = Limits()
    if request is None:
        return default
    values = {}
    for name in ("memory_mb", "cpu_s", "processes", "file_size_mb"):
        given = getattr(request, name)
        cap = getattr(MAX_LIMITS, name)
        if given < 0 or given > cap:
            raise err.InvalidArgument(f"limits.{name} must be between 0 (default) and {cap}, got {given}")
        values[name] = given or getattr(default, name)
    if values["memory_mb"] < 64:
        raise err.InvalidArgument("limits.memory_mb must be at least 64 (a Python interpreter needs it)")
    return Limits(**values)


class MorphProvider(Provider):
    provider_id = "morph"
    prices = PriceTable(
        base={"start": 0.01, "snapshot": 0.005, "branch": 0.005, "execute": 0.001, "merge": 0.001},
        per_cpu_ms=0.0001, per_wall_ms=0.00001,
    )

    def __init__(self, options: ProviderOptions) -> None:
        super().__init__(options)
        v = options.values
        self.engine = Infinibranch(
            options.state_dir, pool_size=int(v.get("pool_size", 2)), max_branches=int(v.get("max_branches", 256)),
            default_ttl_s=int(v.get("ttl_s", 3600)), snapshot_ttl_s=int(v.get("snapshot_ttl_s", 3600)),
        )
        self._languages = available_languages()

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> int:
        return await self.engine.close()

    def languages(self) -> list[str]:
        return list(self._languages)

    def capability_items(self) -> dict[str, object]:
        return {
            "engine": "local Infinibranch: fork-based snapshot and branch of sandboxed interpreters "
                      "(runs on this machine; not Morph Cloud)",
            "snapshot_kind": "MEMORY_AND_DISK",
            "state_preservation": ["memory", "disk"],
            "branch": True, "max_branch_count": self.engine.max_branches,
            "isolation": self.engine.isolation,
            "default_limits": Limits().__dict__,
        }

    def _instance(self, inst: LiveInstance, status: int = pb.RUNNING) -> pb.Instance:
        return pb.Instance(
            instance_id=inst.id, provider_id=self.provider_id, snapshot_id=inst.snapshot_id, status=status,
            created_at=_timestamp(inst.created_at), metadata=inst.metadata,
            limits=pb.Limits(memory_mb=inst.limits.memory_mb, cpu_s=inst.limits.cpu_s,
                             processes=inst.limits.processes, file_size_mb=inst.limits.file_size_mb),
        )

    def _check_language(self, language: str) -> str:
        language = language or "python"
        if language not in self._languages:
            raise err.InvalidArgument(
                f"language {language!r} is not available on morph here; available: {', '.join(self._languages)}")
        return language

    async def start(self, request: pb.StartRequest, call: Call) -> pb.Instance:
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        if request.language:
            self._check_language(request.language)
        if request.snapshot_id:
            made, errors = await self.engine.branch(request.snapshot_id, 1, request.ttl_s, dict(request.metadata))
            if not made:
                raise err.Aborted(f"could not start from snapshot {request.snapshot_id}: {errors}")
            return self._instance(made[0])
        inst = await self.engine.start(limits_from(request.limits if request.HasField("limits") else None),
                                       request.ttl_s, dict(request.metadata))
        return self._instance(inst)

    async def stop(self, request: pb.InstanceRef, call: Call) -> pb.Instance:
        """Stop an instance; given a snapshot id, release that snapshot."""
        member = await self.engine.stop(request.instance_id)
        if isinstance(member, FrozenSnapshot):
            return pb.Instance(instance_id=member.id, provider_id=self.provider_id, snapshot_id=member.id,
                               status=pb.STOPPED, created_at=_timestamp(member.created_at))
        assert isinstance(member, LiveInstance)
        return self._instance(member, pb.STOPPED)

    async def snapshot(self, request: pb.SnapshotRequest, call: Call) -> pb.SnapshotRef:
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        snap: FrozenSnapshot = await self.engine.snapshot(request.instance_id, request.ttl_s)
        return pb.SnapshotRef(snapshot_id=snap.id, instance_id=snap.instance_id, kind=pb.MEMORY_AND_DISK,
                              size_bytes=snap.size_bytes, created_at=_timestamp(snap.created_at))

    async def branch(self, request: pb.BranchRequest, call: Call) -> pb.BranchReply:
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        made, errors = await self.engine.branch(request.snapshot_id, request.count, request.ttl_s)
        return pb.BranchReply(
            snapshot_id=request.snapshot_id, instances=[self._instance(i) for i in made],
            errors=[pb.BranchError(index=e.get("index", 0), code="UNAVAILABLE", message=e["message"]) for e in errors],
        )

    async def execute_stream(self, request: pb.ExecuteRequest, call: Call) -> AsyncIterator[pb.ExecutionEvent]:
        language = self._check_language(request.language)
        async for item in self.engine.execute(request.instance_id, request.code, language, request.timeout_ms,
                                              dict(request.env)):
            if isinstance(item, Output):
                yield pb.ExecutionEvent(**{item.stream: item.text})
            elif isinstance(item, Done):
                call.meter.sandbox_cpu_ms = item.frame.get("cpu_ms", 0.0)
                yield pb.ExecutionEvent(result=pb.ExecutionResult(
                    instance_id=request.instance_id, exit_code=item.frame.get("exit_code", 0),
                    value_json=item.frame.get("value_json", ""), error=item.frame.get("error", ""),
                    duration_ms=item.frame.get("duration_ms", 0.0),
                ))

    async def execute(self, request: pb.ExecuteRequest, call: Call) -> pb.ExecutionResult:
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        try:
            async for event in self.execute_stream(request, call):
                kind = event.WhichOneof("event")
                if kind == "result":
                    result = event.result
                    result.stdout, result.stderr = "".join(out["stdout"]), "".join(out["stderr"])
                    return result
                out[kind].append(getattr(event, kind))
        except err.ProviderError as exc:
            partial = pb.ExecutionResult(instance_id=request.instance_id, stdout="".join(out["stdout"]),
                                         stderr="".join(out["stderr"]), error=exc.message)
            exc.trailers = (("x-worldrt-partial-result-bin", partial.SerializeToString()),)
            raise
        raise err.Aborted(f"instance {request.instance_id} ended the run without a result")

    async def merge(self, request: pb.MergeRequest, call: Call) -> pb.Instance:
        oracle = request.oracle
        winner = await self.engine.merge(list(request.instance_ids), oracle.rule, dict(oracle.scores),
                                         oracle.winner_id)
        return self._instance(winner)
