"""Infinibranch, morph's local engine: snapshots as frozen forks of live sandboxed interpreters.

* Snapshot forks a frozen copy of the instance (memory is copy-on-write); the copy archives the
  instance's disk (workspace and /tmp) for its branches, and the sandbox prepares namespaces for them.
* Branch forks ``count`` live instances from a snapshot. Each enters namespaces of its own under a
  fresh uid, unpacks the disk, and is reseeded: branches share nothing with each other or the parent.
* Merge keeps the oracle's winner and stops the rest. Unused snapshots are reaped like idle instances.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldrt import errors as err
from worldrt.providers.sandbox import (
    ALLOCATOR,
    ArchiveTooLarge,
    ChannelClosed,
    InstanceEngine,
    LiveInstance,
    Member,
    ReadyBranches,
    ReadyBudget,
    SandboxError,
    SandboxFault,
    SandboxProcess,
    new_id,
)

log = logging.getLogger("worldrt.morph")
# Ready children of a snapshot nobody has branched for this long are let go.
READY_IDLE_S = 60.0
# Every entry of a tar stream takes at least one block: the files a disk archive of this size can hold.
TAR_BLOCK = 512



@dataclass
class FrozenSnapshot(Member):
    instance_id: str = ""
    size_bytes: int = 0
    files: int = 0
    children: ReadyBranches | None = field(default=None, repr=False)
    # Processes that ran in the instance when the snapshot was taken: its branches do not carry them.
    processes_not_carried: list[str] = field(default_factory=list)


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Infinibranch(InstanceEngine):
    provider_id = "morph"

    def __init__(self, state_dir: Path, *, max_branches: int = 256, snapshot_ttl_s: int = 3600,
                 **options: Any) -> None:
        super().__init__(state_dir, **options)
        self.max_branches = max_branches
        self.snapshot_ttl_s = snapshot_ttl_s
        self.snapshots: dict[str, FrozenSnapshot] = {}
        self.ready_budget = ReadyBudget()
        # A snapshot moves into its own cgroup after Snapshot returns; its instance is not stopped before.
        self._placing: dict[str, asyncio.Task[None]] = {}

    async def _close_more(self) -> None:
        for sid in list(self.snapshots):
            await self._drop_snapshot(sid, "the provider shut down")

    async def stop(self, member_id: str, reason: str = "stopped by Stop") -> Member:  # type: ignore[override]
        """Stop an instance, or release a snapshot (its frozen process and its disk archive)."""
        if member_id in self.snapshots:
            snap = self.snapshots[member_id]
            await self._drop_snapshot(member_id, "released by Stop")
            return snap
        return await super().stop(member_id, reason)

    def images_in_use(self) -> set[str]:
        return super().images_in_use() | {snap.image for snap in self.snapshots.values()}

    def snapshot_of(self, sid: str) -> FrozenSnapshot:
        snap = self.snapshots.get(sid)
        if snap is not None:
            return snap
        reason = self.gone_reason(sid)
        if reason is not None:
            raise err.NotFound(f"snapshot {sid} no longer exists: {reason}", reason=err.Reason.SNAPSHOT_GONE)
        raise err.NotFound(f"no snapshot {sid!r} on morph", reason=err.Reason.SNAPSHOT_NOT_FOUND)

    async def snapshot(self, iid: str, ttl_s: int) -> FrozenSnapshot:
        inst = self.instance(iid)
        async with inst.lock:
            self.instance(iid)
            inst.touch()
            sid = new_id("s")
            try:
                _reply, fds, size = await self.archive(inst, sid, {"op": "snapshot", "snapshot_id": sid})
                if len(fds) != 1:
                    raise SandboxError("the instance answered snapshot without the snapshot's channel")
                proc = await SandboxProcess.from_hello(fds[0], sid)
            except ArchiveTooLarge as exc:
                raise err.ResourceExhausted(f"snapshot of {iid} failed: {exc}") from exc
            except (SandboxFault, ChannelClosed, OSError) as exc:
                self.archives.drop(sid)
                raise err.Aborted(f"snapshot of {iid} failed: {exc}") from exc
            if "error" in proc.hello:
                proc.close()
                self.archives.drop(sid)
                raise err.Aborted(f"snapshot of {iid} failed: {str(proc.hello['error'])[:300]}")
            inst.sandbox.members.add(proc.key)
            self._placing[iid] = asyncio.create_task(self._place(inst, proc, self._placing.get(iid)))
        self.uids.hold(inst.lineage.uid)
        snap = FrozenSnapshot(sid, inst.sandbox, proc, inst.limits, ttl_s or self.snapshot_ttl_s, inst.lineage,
                              image=inst.image, instance_id=iid, files=self.disk_counts(proc.hello, sid)[0],
                              processes_not_carried=inst.running_processes())
        snap.size_bytes = size + _rss_bytes(proc.pid)
        snap.children = ReadyBranches(inst.sandbox, proc, inst.lineage, inst.limits,
                                      lambda: self.archives.open(sid) if snap.files else None, self.ready_budget,
                                      files=min(snap.files, size // TAR_BLOCK))
        self.snapshots[sid] = snap
        return snap

    async def branch(self, sid: str, count: int, ttl_s: int,
                     metadata: dict[str, str] | None = None) -> tuple[list[LiveInstance], list[dict[str, Any]]]:
        if count <= 0:
            raise err.InvalidArgument("count must be at least 1")
        if count > self.max_branches:
            raise err.InvalidArgument(f"count {count} is above this daemon's maximum of {self.max_branches} branches")
        snap = self.snapshot_of(sid)
        self.check_room(count)
        snap.touch()
        assert snap.children is not None
        try:
            ready, failures = await snap.children.take(count)
        except SandboxFault as exc:
            raise err.FailedPrecondition(f"cannot branch snapshot {sid}: {exc}") from exc
        if sid not in self.snapshots:  # released while its children were being made
            for branch in ready:
                uid = branch.lineage.uid
                await snap.sandbox.kill_then(branch.proc, functools.partial(ALLOCATOR.release, uid))
            raise err.NotFound(f"snapshot {sid} no longer exists: {self.gone_reason(sid)}",
                               reason=err.Reason.SNAPSHOT_GONE)
        made = []
        for branch in ready:
            self.uids.hold(branch.lineage.uid)
            inst = LiveInstance(branch.proc.key, snap.sandbox, branch.proc, snap.limits, ttl_s or self.default_ttl_s,
                                branch.lineage, image=snap.image, snapshot_id=sid, metadata=dict(metadata or {}))
            self.instances[inst.id] = inst
            made.append(inst)
        missing = count - len(made)
        messages = failures[:missing] + ["the branch did not come up (see the provider's log)"] * (missing - len(failures))
        errors = [{"index": len(made) + i, "message": message} for i, message in enumerate(messages)]
        snap.children.fill_soon()
        return made, errors

    async def merge(self, ids: list[str], rule: str, scores: dict[str, float], winner_id: str) -> LiveInstance:
        if not ids:
            raise err.InvalidArgument("instance_ids is empty: name the instances to merge")
        if len(set(ids)) != len(ids):
            raise err.InvalidArgument("instance_ids names an instance more than once")
        for iid in ids:
            self.instance(iid)
        if winner_id:
            if winner_id not in ids:
                raise err.InvalidArgument(f"oracle winner {winner_id} is not one of the merged instances")
            winner = winner_id
        else:
            if rule not in ("max", "min"):
                raise err.InvalidArgument(f"oracle rule must be 'max' or 'min' (or set winner_id), got {rule!r}")
            missing = [iid for iid in ids if iid not in scores]
            if missing:
                raise err.InvalidArgument(f"oracle has no score for {', '.join(missing)}")
            if any(math.isnan(scores[iid]) for iid in ids):
                raise err.InvalidArgument("oracle scores must not be NaN")
            pick: Callable[..., str] = max if rule == "max" else min
            winner = pick(ids, key=lambda iid: scores[iid])
        await asyncio.gather(*(self.drop_instance(iid, f"merged away (the oracle chose {winner})")
                               for iid in ids if iid != winner))
        survivor = self.instances[winner]
        survivor.touch()
        return survivor

    async def _drop_snapshot(self, sid: str, reason: str) -> None:
        snap = self.snapshots.pop(sid, None)
        if snap is None:
            return
        self.bury(sid, reason)
        if snap.children is not None:
            await snap.children.close()
        self.archives.drop(sid)
        await self.release(snap)

    @staticmethod
    async def _place(inst: LiveInstance, proc: SandboxProcess, after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await asyncio.gather(after, return_exceptions=True)
        await asyncio.to_thread(inst.sandbox.place, proc, None, None)

    async def release(self, member: Member) -> None:
        placing = self._placing.pop(member.id, None)
        if placing is not None:
            await asyncio.gather(placing, return_exceptions=True)
        await super().release(member)

    async def reap(self, now: float) -> None:
        await super().reap(now)
        for snap in list(self.snapshots.values()):
            if snap.children is not None and snap.children.ready and now - snap.last_used > READY_IDLE_S:
                await snap.children.trim()
            if snap.expired(now):
                log.info("reaping unused snapshot %s", snap.id)
                await self._drop_snapshot(snap.id, f"unused for more than its ttl of {snap.ttl_s} s")
