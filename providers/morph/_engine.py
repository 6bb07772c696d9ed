"""Infinibranch, the local engine: sandboxed interpreters forked from a zygote, snapshots as frozen forks.

* Start takes a pre-warmed sandbox (bubblewrap + a zygote that already loaded Python) and forks an
  instance from its zygote: each Start gets a sandbox of its own.
* Snapshot forks a frozen copy of the instance (memory is copy-on-write) and copies its workspace.
* Branch forks ``count`` live instances from a snapshot, each with its own copy of the workspace and
  freshly seeded random generators. Branches live in the sandbox of the instance they came from.
* Merge keeps the oracle's winner and stops the rest. Idle instances and unused snapshots are reaped.

Calls into sandbox processes block, so they run on the loop's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _errors as err
from ..sandbox import ChannelClosed, Limits, PidsCgroups, Sandbox, SandboxError, SandboxProcess

log = logging.getLogger("worldrt.morph")

DEFAULT_TIMEOUT_MS = 300_000
INTERRUPT_GRACE_S = 1.0
_TOMBSTONES = 100_000


@dataclass
class Member:
    """Something that lives in a sandbox: a live instance or a frozen snapshot."""

    id: str
    sandbox: Sandbox
    proc: SandboxProcess
    limits: Limits
    ttl_s: int
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def expired(self, now: float) -> bool:
        return self.ttl_s > 0 and now - self.last_used > self.ttl_s


@dataclass
class LiveInstance(Member):
    snapshot_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class FrozenSnapshot(Member):
    instance_id: str = ""
    size_bytes: int = 0


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" or "stderr"
    text: str


@dataclass(frozen=True)
class Done:
    frame: dict[str, Any]


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


class Infinibranch:
    def __init__(self, state_dir: Path, *, pool_size: int = 2, max_branches: int = 256,
                 max_instances: int = 2048, default_ttl_s: int = 3600, snapshot_ttl_s: int = 3600,
                 reap_interval_s: float = 1.0) -> None:
        self.state_dir = state_dir
        self.pool_size = pool_size
        self.max_branches = max_branches
        self.max_instances = max_instances
        self.default_ttl_s = default_ttl_s
        self.snapshot_ttl_s = snapshot_ttl_s
        self.reap_interval_s = reap_interval_s
        self.instances: dict[str, LiveInstance] = {}
        self.snapshots: dict[str, FrozenSnapshot] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._pool: list[Sandbox] = []
        self._refilling: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._cgroups: PidsCgroups | None = None

    # lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._cgroups = PidsCgroups.open(f"worldrt-{os.getpid()}")
        await self._refill()
        self._reaper = asyncio.create_task(self._reap_forever())

    async def close(self) -> int:
        if self._reaper:
            self._reaper.cancel()
        if self._refilling:
            await asyncio.gather(self._refilling, return_exceptions=True)
        stopped = len(self.instances)
        for iid in list(self.instances):
            await self._drop_instance(iid, "the provider shut down")
        for sid in list(self.snapshots):
            await self._drop_snapshot(sid, "the provider shut down")
        pool, self._pool = self._pool, []
        for sandbox in pool:
            await sandbox.close()
        if self._cgroups:
            self._cgroups.close()
        return stopped

    @property
    def isolation(self) -> dict[str, Any]:
        return {"sandbox": "bubblewrap", "network": "none", "system_dirs": "read-only",
                "pid_namespace": True, "rlimits": ["memory", "cpu", "file_size"],
                "process_limit": "pids cgroup per instance" if self._cgroups else "RLIMIT_NPROC per sandbox"}

    # pool --------------------------------------------------------------------------------------
    def _name(self, kind: str) -> str:
        return f"{kind}-{secrets.token_hex(6)}"

    async def _refill(self) -> None:
        while len(self._pool) < self.pool_size:
            self._pool.append(await asyncio.to_thread(Sandbox.start, self._name("sb"), self.state_dir, self._cgroups))

    def _schedule_refill(self) -> None:
        if self._refilling is None or self._refilling.done():
            self._refilling = asyncio.create_task(self._refill())

    async def _take_sandbox(self) -> Sandbox:
        while self._pool:
            sandbox = self._pool.pop()
            if sandbox.alive:
                self._schedule_refill()
                return sandbox
            await sandbox.close()
        self._schedule_refill()
        return await asyncio.to_thread(Sandbox.start, self._name("sb"), self.state_dir, self._cgroups)

    # lookups -----------------------------------------------------------------------------------
    def _bury(self, member_id: str, reason: str) -> None:
        self._gone[member_id] = reason
        while len(self._gone) > _TOMBSTONES:
            self._gone.popitem(last=False)

    def instance(self, iid: str) -> LiveInstance:
        inst = self.instances.get(iid)
        if inst is not None:
            return inst
        if iid in self._gone:
            raise err.FailedPrecondition(f"instance {iid} is stopped: {self._gone[iid]}")
        raise err.NotFound(f"no instance {iid!r} on morph (it never existed here)")

    def snapshot_of(self, sid: str) -> FrozenSnapshot:
        snap = self.snapshots.get(sid)
        if snap is not None:
            return snap
        if sid in self._gone:
            raise err.NotFound(f"snapshot {sid} no longer exists: {self._gone[sid]}")
        raise err.NotFound(f"no snapshot {sid!r} on morph")

    def _check_room(self, count: int) -> None:
        if len(self.instances) + count > self.max_instances:
            raise err.ResourceExhausted(
                f"{count} more instance(s) would exceed this daemon's limit of {self.max_instances} live instances"
            )

    # operations --------------------------------------------------------------------------------
    async def start(self, limits: Limits, ttl_s: int, metadata: dict[str, str]) -> LiveInstance:
        self._check_room(1)
        sandbox = await self._take_sandbox()
        iid = self._name("i")
        try:
            proc = await sandbox.spawn(iid, limits)
        except (SandboxError, ChannelClosed, OSError) as exc:
            await sandbox.close()
            raise err.Unavailable(f"could not start an instance: {exc}") from exc
        inst = LiveInstance(iid, sandbox, proc, limits, ttl_s or self.default_ttl_s, metadata=metadata)
        self.instances[iid] = inst
        return inst

    async def stop(self, member_id: str, reason: str = "stopped by Stop") -> Member:
        """Stop an instance, or release a snapshot (its frozen process and workspace copy)."""
        if member_id in self.snapshots:
            snap = self.snapshots[member_id]
            await self._drop_snapshot(member_id, "released by Stop")
            return snap
        inst = self.instance(member_id)
        await self._drop_instance(member_id, reason)
        return inst

    async def snapshot(self, iid: str, ttl_s: int) -> FrozenSnapshot:
        inst = self.instance(iid)
        async with inst.lock:
            self.instance(iid)
            inst.touch()
            sid = self._name("s")
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
        self._check_room(count)
        snap.touch()
        sandbox = snap.sandbox
        children = [{"iid": self._name("i"), "workspace": ""} for _ in range(count)]
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

    async def execute(self, iid: str, code: str, language: str, timeout_ms: int,
                      env: dict[str, str]) -> AsyncIterator[Output | Done]:
        """Run code in the instance, yielding its output as it is produced and then its result."""
        inst = self.instance(iid)
        async with inst.lock:
            self.instance(iid)
            inst.touch()
            loop = asyncio.get_running_loop()
            timeout_s = (timeout_ms or DEFAULT_TIMEOUT_MS) / 1000
            deadline = loop.time() + timeout_s
            interrupted = False
            finished = False
            try:
                await inst.proc.send({"op": "exec", "code": code, "language": language or "python", "env": env})
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            frame, _fds = await inst.proc.recv()
                    except TimeoutError:
                        if not interrupted:
                            interrupted = True
                            inst.proc.signal(signal.SIGINT)
                            deadline = loop.time() + INTERRUPT_GRACE_S
                            continue
                        finished = True
                        await self._drop_instance(iid, "its code ignored the interrupt at its timeout")
                        raise err.DeadlineExceeded(
                            f"code ran past its timeout of {timeout_s * 1000:.0f} ms and could not be interrupted; "
                            f"instance {iid} was stopped") from None
                    event = frame.get("ev")
                    if event in ("stdout", "stderr"):
                        yield Output(event, frame["d"])
                        continue
                    finished = True
                    if event != "done":
                        raise err.Aborted(f"instance {iid} answered {frame!r} instead of a result")
                    if frame.get("interrupted"):
                        raise err.DeadlineExceeded(
                            f"code ran past its timeout of {timeout_s * 1000:.0f} ms and was interrupted; "
                            f"instance {iid} is still running with its state")
                    yield Done(frame)
                    return
            except (ChannelClosed, OSError, SandboxError) as exc:
                finished = True
                await self._drop_instance(iid, "its process exited while running code")
                raise err.Aborted(f"instance {iid} exited while running the code ({exc}); it is stopped") from exc
            finally:
                if not finished and iid in self.instances:
                    await self._abandon_run(inst)

    async def _abandon_run(self, inst: LiveInstance) -> None:
        """The caller went away mid-run: interrupt the code and read to its end, or stop the instance."""
        inst.proc.signal(signal.SIGINT)
        try:
            async with asyncio.timeout(INTERRUPT_GRACE_S):
                while (await inst.proc.recv())[0].get("ev") != "done":
                    pass
        except (TimeoutError, ChannelClosed, OSError, SandboxError):
            await self._drop_instance(inst.id, "its code ran on after its caller went away")

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
                await self._drop_instance(iid, f"merged away (the oracle chose {winner})")
        survivor = self.instances[winner]
        survivor.touch()
        return survivor

    # teardown ----------------------------------------------------------------------------------
    async def _drop_instance(self, iid: str, reason: str) -> None:
        inst = self.instances.pop(iid, None)
        if inst is None:
            return
        self._bury(iid, reason)
        await self._release(inst)

    async def _drop_snapshot(self, sid: str, reason: str) -> None:
        snap = self.snapshots.pop(sid, None)
        if snap is None:
            return
        self._bury(sid, reason)
        await self._release(snap)

    async def _release(self, member: Member) -> None:
        sandbox = member.sandbox
        await sandbox.kill(member.proc)
        if not sandbox.members:
            await sandbox.close()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval_s)
            now = time.monotonic()
            for inst in list(self.instances.values()):
                if inst.expired(now) and not inst.lock.locked():
                    log.info("reaping idle instance %s", inst.id)
                    await self._drop_instance(inst.id, f"idle for more than its ttl of {inst.ttl_s} s")
            for snap in list(self.snapshots.values()):
                if snap.expired(now):
                    log.info("reaping unused snapshot %s", snap.id)
                    await self._drop_snapshot(snap.id, f"unused for more than its ttl of {snap.ttl_s} s")
