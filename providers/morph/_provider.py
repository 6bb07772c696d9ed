"""morph: the contract's generator with branching, served by the local Infinibranch engine."""

from __future__ import annotations

from worldrt import errors as err
from worldrt import telemetry
from worldrt.providers import Call, PriceTable, ProviderOptions
from worldrt.providers.morph._engine import FrozenSnapshot, Infinibranch
from worldrt.providers.sandbox import Limits, SandboxedProvider, timestamp
from worldrt.v1 import pb


class MorphProvider(SandboxedProvider):
    provider_id = "morph"
    prices = PriceTable(
        base={"start": 0.01, "snapshot": 0.005, "branch": 0.005, "execute": 0.001, "merge": 0.001},
        per_cpu_ms=0.0001, per_wall_ms=0.00001,
    )

    def __init__(self, options: ProviderOptions) -> None:
        super().__init__(options)
        v = options.values
        self.engine: Infinibranch = Infinibranch(
            options.state_dir, pool_size=int(v.get("pool_size", 2)), max_branches=int(v.get("max_branches", 256)),
            default_ttl_s=int(v.get("ttl_s", 3600)), snapshot_ttl_s=int(v.get("snapshot_ttl_s", 3600)),
            images=self.images,
        )

    def capability_items(self) -> dict[str, object]:
        return {
            "backend": "local",
            "engine": "local Infinibranch: fork-based snapshot and branch of sandboxed interpreters "
                      "(runs on this machine; not Morph Cloud)",
            "snapshot_kind": "MEMORY_AND_DISK",
            "state_preservation": ["memory", "disk"],
            "branch": True, "max_branch_count": self.engine.max_branches,
            "isolation": self.engine.isolation,
            "default_limits": Limits().__dict__,
            "processes": self.processes_capability("the interpreter's memory and the files"),
        }

    async def start(self, request: pb.StartRequest, call: Call) -> pb.Instance:
        limits = self.check_start(request, call)
        if request.language:
            self.check_language(request.language)
        image = self.engine.image(request.image) if request.image else None
        if request.snapshot_id:
            snap = self.engine.snapshot_of(request.snapshot_id)
            if image is not None and image.digest != snap.image:
                raise err.InvalidArgument(f"snapshot {request.snapshot_id} runs from image {snap.image[:12]}, not "
                                          f"{request.image!r}: leave image empty to start from a snapshot")
            made, errors = await self.engine.branch(request.snapshot_id, 1, request.ttl_s, dict(request.metadata))
            if not made:
                raise err.Aborted(f"could not start from snapshot {request.snapshot_id}: {errors}")
            return self.instance_pb(made[0])
        with telemetry.span("sandbox.start", {"worldrt.provider": self.provider_id}):
            return self.instance_pb(await self.engine.start(limits, request.ttl_s, dict(request.metadata), image=image))

    async def stop(self, request: pb.InstanceRef, call: Call) -> pb.Instance:
        """Stop an instance; given a snapshot id, release that snapshot."""
        member = await self.engine.stop(request.instance_id)
        if isinstance(member, FrozenSnapshot):
            return pb.Instance(instance_id=member.id, provider_id=self.provider_id, snapshot_id=member.id,
                               status=pb.STOPPED, created_at=timestamp(member.created_at))
        return self.instance_pb(member, pb.STOPPED)  # type: ignore[arg-type]

    async def snapshot(self, request: pb.SnapshotRequest, call: Call) -> pb.SnapshotRef:
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        with telemetry.span("sandbox.snapshot", {"worldrt.provider": self.provider_id,
                                                 "worldrt.instance_id": request.instance_id}):
            snap = await self.engine.snapshot(request.instance_id, request.ttl_s)
        return pb.SnapshotRef(snapshot_id=snap.id, instance_id=snap.instance_id, kind=pb.MEMORY_AND_DISK,
                              size_bytes=snap.size_bytes, created_at=timestamp(snap.created_at), image=snap.image,
                              processes_not_carried=snap.processes_not_carried)

    async def branch(self, request: pb.BranchRequest, call: Call) -> pb.BranchReply:
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        with telemetry.span("sandbox.branch", {"worldrt.provider": self.provider_id, "worldrt.snapshot_id": request.snapshot_id,
                                               "worldrt.count": request.count}):
            made, errors = await self.engine.branch(request.snapshot_id, request.count, request.ttl_s)
        return pb.BranchReply(
            snapshot_id=request.snapshot_id, instances=[self.instance_pb(i) for i in made],
            processes_not_carried=self.engine.snapshot_of(request.snapshot_id).processes_not_carried,
            errors=[pb.BranchError(index=e.get("index", 0), code="UNAVAILABLE", message=e["message"]) for e in errors],
        )

    async def merge(self, request: pb.MergeRequest, call: Call) -> pb.Instance:
        oracle = request.oracle
        winner = await self.engine.merge(list(request.instance_ids), oracle.rule, dict(oracle.scores),
                                         oracle.winner_id)
        return self.instance_pb(winner)
