"""Live instances in sandboxes: the part morph and modal share.

A pool of pre-started sandboxes (bubblewrap + a zygote that already loaded Python) makes Start fast;
each Start takes a sandbox of its own and forks an instance from its zygote. Execute streams output
and honours its timeout (interrupt, then stop the instance if the code ignores the interrupt). Idle
members are reaped; a sandbox ends when its last member is gone. Calls on stopped ids say why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _errors as err
from ._cgroup import PidsCgroups
from ._process import ChannelClosed, SandboxError, SandboxProcess
from ._sandbox import Limits, Sandbox

log = logging.getLogger("worldrt.sandbox")

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
    born: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def expired(self, now: float) -> bool:
        return self.ttl_s > 0 and now - self.last_used > self.ttl_s


@dataclass
class LiveInstance(Member):
    snapshot_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" or "stderr"
    text: str


@dataclass(frozen=True)
class Done:
    frame: dict[str, Any]


def new_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(6)}"


class InstanceEngine:
    """Instances in sandboxes. Subclasses add what their provider does beyond start/execute/stop."""

    provider_id = "sandbox"

    def __init__(self, state_dir: Path, *, pool_size: int = 2, max_instances: int = 2048,
                 default_ttl_s: int = 3600, max_lifetime_s: int = 0, reap_interval_s: float = 1.0) -> None:
        self.state_dir = state_dir
        self.pool_size = pool_size
        self.max_instances = max_instances
        self.default_ttl_s = default_ttl_s
        self.max_lifetime_s = max_lifetime_s
        self.reap_interval_s = reap_interval_s
        self.instances: dict[str, LiveInstance] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._pool: list[Sandbox] = []
        self._refilling: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.cgroups: PidsCgroups | None = None

    # lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.cgroups = PidsCgroups.open(f"worldrt-{self.provider_id}-{os.getpid()}")
        await self._refill()
        self._reaper = asyncio.create_task(self._reap_forever())

    async def close(self) -> int:
        """Stop every instance and sandbox; return how many instances were running."""
        if self._reaper:
            self._reaper.cancel()
        if self._refilling:
            await asyncio.gather(self._refilling, return_exceptions=True)
        stopped = len(self.instances)
        for iid in list(self.instances):
            await self.drop_instance(iid, "the provider shut down")
        await self._close_more()
        pool, self._pool = self._pool, []
        for sandbox in pool:
            await sandbox.close()
        if self.cgroups:
            await asyncio.to_thread(self.cgroups.close)
        return stopped

    async def _close_more(self) -> None:
        """Release what a subclass holds besides instances (snapshots)."""

    @property
    def isolation(self) -> dict[str, Any]:
        return {"sandbox": "bubblewrap", "network": "none", "system_dirs": "read-only",
                "pid_namespace": True, "rlimits": ["memory", "cpu", "file_size"],
                "process_limit": "pids cgroup per instance" if self.cgroups else "RLIMIT_NPROC per sandbox"}

    # pool --------------------------------------------------------------------------------------
    async def _new_sandbox(self) -> Sandbox:
        return await asyncio.to_thread(Sandbox.start, new_id("sb"), self.state_dir, self.cgroups)

    async def _refill(self) -> None:
        while len(self._pool) < self.pool_size:
            self._pool.append(await self._new_sandbox())

    def _schedule_refill(self) -> None:
        if self._refilling is None or self._refilling.done():
            self._refilling = asyncio.create_task(self._refill())

    async def take_sandbox(self) -> tuple[Sandbox, bool]:
        """A sandbox of its own for a new instance: (sandbox, came warm from the pool)."""
        while self._pool:
            sandbox = self._pool.pop()
            if sandbox.alive:
                self._schedule_refill()
                return sandbox, True
            await sandbox.close()
        self._schedule_refill()
        return await self._new_sandbox(), False

    # lookups -----------------------------------------------------------------------------------
    def bury(self, member_id: str, reason: str) -> None:
        self._gone[member_id] = reason
        while len(self._gone) > _TOMBSTONES:
            self._gone.popitem(last=False)

    def gone_reason(self, member_id: str) -> str | None:
        return self._gone.get(member_id)

    def instance(self, iid: str) -> LiveInstance:
        inst = self.instances.get(iid)
        if inst is not None:
            return inst
        if iid in self._gone:
            raise err.FailedPrecondition(f"instance {iid} is stopped: {self._gone[iid]}")
        raise err.NotFound(f"no instance {iid!r} on {self.provider_id} (it never existed here)")

    def check_room(self, count: int) -> None:
        if len(self.instances) + count > self.max_instances:
            raise err.ResourceExhausted(
                f"{count} more instance(s) would exceed this daemon's limit of {self.max_instances} live instances")

    # operations --------------------------------------------------------------------------------
    async def start(self, limits: Limits, ttl_s: int, metadata: dict[str, str],
                    prepare: Any = None) -> LiveInstance:
        """Start an instance in a sandbox of its own; ``prepare(sandbox, iid)`` may fill its workspace first."""
        self.check_room(1)
        sandbox, _warm = await self.take_sandbox()
        iid = new_id("i")
        try:
            if prepare is not None:
                await prepare(sandbox, iid)
            proc = await sandbox.spawn(iid, limits)
        except (SandboxError, ChannelClosed, OSError) as exc:
            await sandbox.close()
            raise err.Unavailable(f"could not start an instance: {exc}") from exc
        inst = LiveInstance(iid, sandbox, proc, limits, ttl_s or self.default_ttl_s, metadata=metadata)
        self.instances[iid] = inst
        return inst

    async def stop(self, iid: str, reason: str = "stopped by Stop") -> LiveInstance:
        inst = self.instance(iid)
        await self.drop_instance(iid, reason)
        return inst

    async def execute(self, iid: str, code: str, language: str, timeout_ms: int,
                      env: dict[str, str]) -> AsyncIterator[Output | Done]:
        """Run code in the instance, yielding its output as it is produced and then its result.

        At the timeout the code gets SIGINT; if no result comes within the grace period the channel is
        closed and the instance stopped. One timer per run, so reading frames costs no timeout context."""
        inst = self.instance(iid)
        async with inst.lock:
            self.instance(iid)
            inst.touch()
            loop = asyncio.get_running_loop()
            timeout_s = (timeout_ms or DEFAULT_TIMEOUT_MS) / 1000
            phase = "running"
            grace: asyncio.TimerHandle | None = None

            def on_grace_over() -> None:
                nonlocal phase
                phase = "unresponsive"
                inst.proc.close()  # wakes the read below with ChannelClosed

            def on_deadline() -> None:
                nonlocal phase, grace
                phase = "interrupted"
                inst.proc.signal(signal.SIGINT)
                grace = loop.call_later(INTERRUPT_GRACE_S, on_grace_over)

            timer = loop.call_later(timeout_s, on_deadline)
            finished = False
            try:
                await inst.proc.send({"op": "exec", "code": code, "language": language or "python", "env": env})
                while True:
                    frame, _fds = await inst.proc.recv()
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
                    inst.touch()
                    yield Done(frame)
                    return
            except (ChannelClosed, OSError, SandboxError) as exc:
                finished = True
                if phase == "unresponsive":
                    await self.drop_instance(iid, "its code ignored the interrupt at its timeout")
                    raise err.DeadlineExceeded(
                        f"code ran past its timeout of {timeout_s * 1000:.0f} ms and could not be interrupted; "
                        f"instance {iid} was stopped") from None
                await self.drop_instance(iid, "its process exited while running code")
                raise err.Aborted(f"instance {iid} exited while running the code ({exc}); it is stopped") from exc
            finally:
                timer.cancel()
                if grace is not None:
                    grace.cancel()
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
            await self.drop_instance(inst.id, "its code ran on after its caller went away")

    # teardown ----------------------------------------------------------------------------------
    async def drop_instance(self, iid: str, reason: str) -> None:
        inst = self.instances.pop(iid, None)
        if inst is None:
            return
        self.bury(iid, reason)
        await self.release(inst)

    async def release(self, member: Member) -> None:
        sandbox = member.sandbox
        await sandbox.kill(member.proc)
        if not sandbox.members:
            await sandbox.close()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval_s)
            try:
                await self.reap(time.monotonic())
            except Exception:  # noqa: BLE001 - the reaper must outlive any one failure
                log.exception("reaping failed")

    async def reap(self, now: float) -> None:
        for inst in list(self.instances.values()):
            if inst.lock.locked():
                continue
            if inst.expired(now):
                log.info("reaping idle instance %s", inst.id)
                await self.drop_instance(inst.id, f"idle for more than its ttl of {inst.ttl_s} s")
            elif self.max_lifetime_s and now - inst.born > self.max_lifetime_s:
                log.info("ending instance %s at its lifetime", inst.id)
                await self.drop_instance(inst.id, f"reached its maximum lifetime of {self.max_lifetime_s} s")
