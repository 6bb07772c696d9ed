"""The sandbox pool, modal's local engine: pre-warmed sandboxes for one-shot runs and longer-lived ones.

A one-shot Execute takes a warm sandbox, runs the code and ends the sandbox: nothing it did survives.
Started sandboxes live until Stop, their idle timeout or their lifetime. Snapshots are of the disk only
(DISK_ONLY): the instance archives its own workspace and /tmp; a later Start unpacks the archive inside
a fresh sandbox, as that sandbox's member.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldrt import errors as err
from worldrt.providers.sandbox import (
    ArchiveTooLarge,
    ChannelClosed,
    Done,
    ImageInfo,
    InstanceEngine,
    Limits,
    LiveInstance,
    Output,
    RunInput,
    SandboxFault,
    SandboxProcess,
    new_id,
)

log = logging.getLogger("worldrt.modal")


@dataclass
class DiskSnapshot:
    id: str
    instance_id: str
    size_bytes: int
    files: int
    ttl_s: int
    image: str = ""
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    # Processes running in the instance when it was taken: a snapshot carries files only.
    processes_not_carried: list[str] = field(default_factory=list)


class SandboxPool(InstanceEngine):
    provider_id = "modal"

    def __init__(self, state_dir: Path, *, snapshot_ttl_s: int = 3600, **options: Any) -> None:
        super().__init__(state_dir, **options)
        self.snapshot_ttl_s = snapshot_ttl_s
        self.snapshots: dict[str, DiskSnapshot] = {}

    async def run_once(self, code: str, language: str, timeout_ms: int, env: dict[str, str],
                       limits: Limits, *, collect: bool = False,
                       argv: list[str] | None = None, given: RunInput | None = None) -> AsyncIterator[Output | Done]:
        """Run code (or a command) in a fresh warm sandbox that ends with the run."""
        inst = await self.start(limits, 0, {"one_shot": "true"})
        try:
            async for item in self.execute(inst.id, code, language, timeout_ms, env, collect=collect, argv=argv,
                                           given=given):
                yield item
        finally:
            await self.drop_instance(inst.id, "its one-shot run ended")

    async def start_from(self, snapshot_id: str, limits: Limits, ttl_s: int,
                         metadata: dict[str, str], image: ImageInfo | None = None) -> LiveInstance:
        """A fresh sandbox of the snapshot's image with the snapshot's disk unpacked in it."""
        snap = self.snapshot_of(snapshot_id)
        if image is not None and image.digest != snap.image:
            raise err.InvalidArgument(f"snapshot {snapshot_id} was taken of image {snap.image[:12]}, not "
                                      f"{image.digest[:12]}: leave image empty to start from a snapshot")
        image = self.image(snap.image) if snap.image else None
        snap.last_used = time.monotonic()

        async def unpack(proc: SandboxProcess) -> None:
            if snap.files:
                archive = self.archives.open(snap.id)
                try:
                    await proc.request({"op": "restore"}, [archive])
                finally:
                    os.close(archive)

        inst = await self.start(limits, ttl_s, metadata, prepare=unpack, image=image)
        inst.snapshot_id = snapshot_id
        return inst

    def images_in_use(self) -> set[str]:
        return super().images_in_use() | {snap.image for snap in self.snapshots.values()}

    def snapshot_of(self, sid: str) -> DiskSnapshot:
        snap = self.snapshots.get(sid)
        if snap is not None:
            return snap
        reason = self.gone_reason(sid)
        if reason:
            raise err.NotFound(f"snapshot {sid} no longer exists: {reason}", reason=err.Reason.SNAPSHOT_GONE)
        raise err.NotFound(f"no snapshot {sid!r} on modal", reason=err.Reason.SNAPSHOT_NOT_FOUND)

    async def snapshot(self, iid: str, ttl_s: int) -> DiskSnapshot:
        inst = self.instance(iid)
        async with inst.lock:
            self.instance(iid)
            inst.touch()
            sid = new_id("s")
            try:
                reply, _fds, _size = await self.archive(inst, sid, {"op": "archive"})
            except ArchiveTooLarge as exc:
                raise err.ResourceExhausted(f"snapshot of {iid} failed: {exc}") from exc
            except (SandboxFault, ChannelClosed, OSError) as exc:
                raise err.Aborted(f"snapshot of {iid} failed: {exc}") from exc
        files, size = self.disk_counts(reply, iid)
        snap = DiskSnapshot(sid, iid, size, files, ttl_s or self.snapshot_ttl_s, image=inst.image,
                            processes_not_carried=inst.running_processes())
        self.snapshots[sid] = snap
        return snap

    async def drop_snapshot(self, sid: str, reason: str) -> DiskSnapshot | None:
        snap = self.snapshots.pop(sid, None)
        if snap is not None:
            self.bury(sid, reason)
            self.archives.drop(sid)
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
