"""Infinibranch, morph's local engine: snapshots as frozen forks of live sandboxed interpreters.

* Snapshot forks a frozen copy of the instance (memory is copy-on-write) and copies its workspace.
* Branch forks ``count`` live instances from a snapshot, each with its own copy of the workspace and
  freshly seeded random generators. Branches live in the sandbox of the instance they came from.
* Merge keeps the oracle's winner and stops the rest. Unused snapshots are reaped like idle instances.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _errors as err
from ..sandbox import ChannelClosed, SandboxError, SandboxProcess
from ..sandbox._instances import InstanceEngine, LiveInstance, Member, log, new_id


@dataclass
class FrozenSnapshot(Member):
    instance_id: str = ""
    size_bytes: int = 0


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


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

    async def _close_more(self) -> None:
        for sid in list(self.snapshots):
            await self._drop_snapshot(sid, "the provider shut down")

    async def stop(self, member_id: str, reason: str = "stopped by Stop") -> Member:  # type: ignore[override]
        """Stop an instance, or release a snapshot (its frozen process and workspace copy)."""
        if member_id in self.snapshots:
            snap = self.snapshots[member_id]
            await self._drop_snapshot(member_id, "released by Stop")
            return snap
        return await super().stop(member_id, reason)

    def snapshot_of(self, sid: str) -> FrozenSnapshot:
        snap = self.snapshots.get(sid)
        if snap is not None:
            return snap
        reason = self.gone_reason(sid)
        if reason is not None:
            raise err.NotFound(f"snapshot {sid} no longer exists: {reason}")
        raise err.NotFound(f"no snapshot {sid!r} on morph")

    async def snapshot(self, iid: str, ttl_s: int) -> FrozenSnapshot:
        inst = self.instance(iid)
        async with inst.lock:
            self.instance(iid)
            inst.touch()
            sid = new_id("s")
            sandbox = inst.sandbox

            try:
                _reply, fds = await inst.proc.request(
                    {"op": "snapshot", "snapshot_id": sid, "workspace": sandbox.inner_path(sid)})
                proc = await SandboxProcess.from_hello(fds[0], sid)
                sandbox.adopt(proc, None)
            except (SandboxError, ChannelClosed, OSError) as exc:
                raise err.Aborted(f"snapshot of {iid} failed: {exc}") from exc
        snap = FrozenSnapshot(sid, sandbox, proc, inst.limits, ttl_s or self.snapshot_ttl_s, instance_id=iid)
        snap.size_bytes = _dir_bytes(sandbox.host_path(sid)) + _rss_bytes(proc.pid)
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
        sandbox = snap.sandbox
        children = [{"iid": new_id("i"), "workspace": ""} for _ in range(count)]
        for child in children:
            child["workspace"] = sandbox.inner_path(child["iid"])

        procs: list[SandboxProcess] = []
        errors: list[dict[str, Any]] = []
        try:
            async for reply, fds in snap.proc.replies({"op": "branch", "children": children}):
                errors.extend(reply.get("errors", []))
                for iid, fd in zip(reply.get("iids", []), fds):
                    try:
                        procs.append(await SandboxProcess.from_hello(fd, iid))
                    except (SandboxError, ChannelClosed, OSError) as exc:
                        errors.append({"iid": iid, "message": f"branch did not come up: {exc}"})
        except (SandboxError, ChannelClosed, OSError) as exc:
            for proc in procs:
                await sandbox.kill(proc)
            raise err.Aborted(f"branching snapshot {sid} failed: {exc}") from exc
        await asyncio.to_thread(lambda: [sandbox.adopt(proc, snap.limits.processes) for proc in procs])
        index = {c["iid"]: i for i, c in enumerate(children)}
        for error in errors:
            error["index"] = index.get(error.get("iid", ""), error.get("index", 0))
        made = []
        for proc in procs:
            inst = LiveInstance(proc.key, sandbox, proc, snap.limits, ttl_s or self.default_ttl_s, snapshot_id=sid,
                                metadata=dict(metadata or {}))
            self.instances[proc.key] = inst
            made.append(inst)
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
        for iid in ids:
            if iid != winner:
                await self.drop_instance(iid, f"merged away (the oracle chose {winner})")
        survivor = self.instances[winner]
        survivor.touch()
        return survivor

    async def _drop_snapshot(self, sid: str, reason: str) -> None:
        snap = self.snapshots.pop(sid, None)
        if snap is None:
            return
        self.bury(sid, reason)
        await self.release(snap)


    async def reap(self, now: float) -> None:
        await super().reap(now)
        for snap in list(self.snapshots.values()):
            if snap.expired(now):
                log.info("reaping unused snapshot %s", snap.id)
                await self._drop_snapshot(snap.id, f"unused for more than its ttl of {snap.ttl_s} s")
