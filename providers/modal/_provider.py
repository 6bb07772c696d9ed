"""modal: the contract's generator for one-shot and longer-lived sandboxes, served by a local pool."""

from __future__ import annotations

from collections.abc import AsyncIterator

from worldrt import errors as err
from worldrt import telemetry
from worldrt.providers import Call, PriceTable, ProviderOptions
from worldrt.providers.modal._engine import SandboxPool
from worldrt.providers.sandbox import Done, Limits, Output, SandboxedProvider, timestamp
from worldrt.v1 import pb


class ModalProvider(SandboxedProvider):
    provider_id = "modal"
    prices = PriceTable(base={"start": 0.005, "snapshot": 0.002, "execute": 0.0005},
                        per_cpu_ms=0.00012, per_wall_ms=0.00001)

    def __init__(self, options: ProviderOptions) -> None:
        super().__init__(options)
        v = options.values
        self.engine: SandboxPool = SandboxPool(
            options.state_dir, pool_size=int(v.get("pool_size", 4)), default_ttl_s=int(v.get("idle_timeout_s", 300)),
            max_lifetime_s=int(v.get("lifetime_s", 3600)), snapshot_ttl_s=int(v.get("snapshot_ttl_s", 3600)),
            images=self.images,
        )

    def capability_items(self) -> dict[str, object]:
        e = self.engine
        return {
            "engine": "local sandbox pool: pre-warmed bubblewrap sandboxes (runs on this machine; not Modal's cloud)",
            "snapshot_kind": "DISK_ONLY",
            "one_shot_execute": "Execute without instance_id runs in a fresh warm sandbox that ends with the run",
            "pool_size": e.pool_size, "idle_timeout_s": e.default_ttl_s, "lifetime_s": e.max_lifetime_s,
            "isolation": e.isolation, "default_limits": Limits().__dict__,
            "processes": self.processes_capability("the files"),
        }

    async def start(self, request: pb.StartRequest, call: Call) -> pb.Instance:
        limits = self.check_start(request, call)
        if request.language:
            self.check_language(request.language)
        image = self.engine.image(request.image) if request.image else None
        if request.snapshot_id:
            inst = await self.engine.start_from(request.snapshot_id, limits, request.ttl_s, dict(request.metadata),
                                                image)
        else:
            inst = await self.engine.start(limits, request.ttl_s, dict(request.metadata), image=image)
        return self.instance_pb(inst)

    async def stop(self, request: pb.InstanceRef, call: Call) -> pb.Instance:
        """Stop a sandbox; given a snapshot id, delete that snapshot."""
        snap = await self.engine.drop_snapshot(request.instance_id, "released by Stop")
        if snap is not None:
            return pb.Instance(instance_id=snap.id, provider_id=self.provider_id, snapshot_id=snap.id,
                               status=pb.STOPPED, created_at=timestamp(snap.created_at))
        return await super().stop(request, call)

    async def snapshot(self, request: pb.SnapshotRequest, call: Call) -> pb.SnapshotRef:
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        with telemetry.span("sandbox.snapshot", {"worldrt.provider": self.provider_id,
                                                 "worldrt.instance_id": request.instance_id}):
            snap = await self.engine.snapshot(request.instance_id, request.ttl_s)
        return pb.SnapshotRef(snapshot_id=snap.id, instance_id=snap.instance_id, kind=pb.DISK_ONLY,
                              size_bytes=snap.size_bytes, created_at=timestamp(snap.created_at), image=snap.image,
                              processes_not_carried=snap.processes_not_carried)

    def runs(self, request: pb.ExecuteRequest, language: str, *, collect: bool) -> AsyncIterator[Output | Done]:
        """Without an instance id, the run has a fresh sandbox of its own (Modal's one-shot run)."""
        if request.instance_id:
            return super().runs(request, language, collect=collect)
        return self.engine.run_once(request.code, language, request.timeout_ms, dict(request.env), Limits(),
                                    collect=collect, argv=self.check_argv(request), given=self.run_input(request))
