"""The sandbox pool, modal's local engine: pre-warmed sandboxes for one-shot runs and longer-lived ones.

A one-shot Execute takes a warm sandbox, runs the code and ends the sandbox: nothing it did survives.
Started sandboxes live until Stop, their idle timeout or their lifetime. Snapshots are of the
workspace only (DISK_ONLY): a copy on the host that a later Start unpacks into a fresh sandbox.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _errors as err
from ..sandbox import Limits, Sandbox
from ..sandbox._instances import Done, InstanceEngine, LiveInstance, Output, log, new_id


@dataclass
class DiskSnapshot:
    id: str
    instance_id: str
    path: Path
    size_bytes: int
    ttl_s: int
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)


def _copy_tree(source: Path, target: Path, uid: int | None = None, gid: int | None = None) -> int:
    """Copy a workspace (symlinks kept as links), owned by ``uid`` when given; return the bytes copied."""
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    total = 0
    for root, dirs, files in os.walk(target):
        for name in dirs + files:
            path = os.path.join(root, name)
            if uid is not None:
                os.lchown(path, uid, gid if gid is not None else uid)
            if name in files:
                total += os.lstat(path).st_size
    if uid is not None:
        os.lchown(target, uid, gid if gid is not None else uid)
    return total


class SandboxPool(InstanceEngine):
    provider_id = "modal"

    def __init__(self, state_dir: Path, *, snapshot_ttl_s: int = 3600, **options: Any) -> None:
        super().__init__(state_dir, **options)
        self.snapshot_ttl_s = snapshot_ttl_s
        self.snapshots: dict[str, DiskSnapshot] = {}
        self.snapshot_dir = state_dir / "snapshots"

    async def run_once(self, code: str, language: str, timeout_ms: int, env: dict[str, str],
                       limits: Limits) -> AsyncIterator[Output | Done]:
        """Run code in a fresh warm sandbox that ends with the run."""
        inst = await self.start(limits, 0, {"one_shot": "true"})
        try:
            async for item in self.execute(inst.id, code, language, timeout_ms, env):
                yield item
        finally:
            await self.drop_instance(inst.id, "its one-shot run ended")

    async def start_from(self, snapshot_id: str, limits: Limits, ttl_s: int,
                         metadata: dict[str, str]) -> LiveInstance:
        snap = self.snapshot_of(snapshot_id)
        snap.last_used = time.monotonic()

        async def unpack(sandbox: Sandbox, iid: str) -> None:
            await asyncio.to_thread(_copy_tree, snap.path, sandbox.host_path(iid), sandbox.uid, sandbox.uid)

        inst = await self.start(limits, ttl_s, metadata, prepare=unpack)
        inst.snapshot_id = snapshot_id
        return inst

    def snapshot_of(self, sid: str) -> DiskSnapshot:
        snap = self.snapshots.get(sid)
        if snap is not None:
            return snap
        reason = self.gone_reason(sid)
        raise err.NotFound(f"snapshot {sid} no longer exists: {reason}" if reason else f"no snapshot {sid!r} on modal")

    async def snapshot(self, iid: str, ttl_s: int) -> DiskSnapshot:
        inst = self.instance(iid)
        async with inst.lock:
            self.instance(iid)
            inst.touch()
            sid = new_id("s")
            target = self.snapshot_dir / sid
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            size = await asyncio.to_thread(_copy_tree, inst.sandbox.host_path(iid), target)
        snap = DiskSnapshot(sid, iid, target, size, ttl_s or self.snapshot_ttl_s)
        self.snapshots[sid] = snap
        return snap

    async def drop_snapshot(self, sid: str, reason: str) -> DiskSnapshot | None:
        snap = self.snapshots.pop(sid, None)
        if snap is not None:
            self.bury(sid, reason)
            await asyncio.to_thread(shutil.rmtree, snap.path, True)
        return snap

    async def _close_more(self) -> None:
        for sid in list(self.snapshots):
            await self.drop_snapshot(sid, "the provider shut down")

    async def reap(self, now: float) -> None:
        await super().reap(now)
        for snap in list(self.snapshots.values()):
            if snap.ttl_s > 0 and now - snap.last_used > snap.ttl_s:
                log.info("reaping unused snapshot %s", snap.id)
                await self.drop_snapshot(snap.id, f"unused for more than its ttl of {snap.ttl_s} s")
