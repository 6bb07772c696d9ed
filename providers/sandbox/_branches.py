"""Branches: live members forked from a frozen snapshot that share nothing with it or with each other.

A snapshot's child is born with its parent's memory, uid and namespaces. Before it runs anything it
enters namespaces made for it (a user namespace shared with the siblings made in the same batch, and
its own mount, network and ipc namespaces, with its own /workspace, /tmp and /dev/shm), becomes a uid
no live process has, drops every capability, closes what it inherited and unpacks the snapshot's disk.
Siblings share no uid, file, socket or ipc object, and none holds a capability. The daemon checks that
the child did all this before it hands it out.

A snapshot keeps children ready (``ReadyBranches``), so a Branch only hands them out. User namespaces
nest: a branch of a branch is one level deeper; the kernel allows 32.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from worldrt.providers.sandbox import _frames
from worldrt.providers.sandbox._process import (
    ChannelClosed,
    ProtocolError,
    SandboxError,
    SandboxFault,
    SandboxProcess,
)
from worldrt.providers.sandbox._sandbox import Limits, NsSet, Sandbox
from worldrt.providers.sandbox._uids import ALLOCATOR

log = logging.getLogger("worldrt.sandbox")
MAX_DEPTH = 32
# The most children one snapshot keeps ready, and namespace sets it keeps made ahead of them.
MAX_READY = 16
AHEAD_SETS = 8
# Descriptors one frame of a snapshot's answer may carry (it streams its children a few at a time).
_STREAM_FDS = 200
BIRTH_TIMEOUT_S = 20.0
# A child unpacks its snapshot's disk before it is ready: each file is given this long on top (slow, under load),
# up to a bound (the count is the snapshot's own claim).
RESTORE_S_PER_FILE = 0.001
MAX_BIRTH_S = 300.0


@dataclass(frozen=True)
class Lineage:
    """Who a member's processes are: the uid they run as (the same inside and out: every user namespace
    of a sandbox maps the sandbox uid range onto itself) and how deep their user namespace is nested."""

    uid: int
    depth: int = 0

    def child(self, uid: int) -> Lineage:
        return Lineage(uid, self.depth + 1)


@dataclass
class ReadyBudget:
    """How many idle ready children a daemon keeps, all snapshots together."""

    limit: int = 64
    used: int = 0

    def room(self) -> int:
        return max(0, self.limit - self.used)


@dataclass
class Branch:
    """A child of a snapshot that has come up isolated and waits to be handed out."""

    proc: SandboxProcess
    lineage: Lineage


class ReadyBranches:
    """Children of one frozen snapshot, forked and isolated ahead of the Branch that hands them out.

    A snapshot runs nothing after it is taken, so a child forked now is the same as one forked at the
    Branch call; forking ahead takes the fork, the namespaces and the cgroup placement (whose first
    move after a pause waits out an RCU grace period) off the caller's path. ``target`` children are
    kept ready; a Branch asking for more gets the rest made on the spot."""

    def __init__(self, sandbox: Sandbox, snapshot: SandboxProcess, lineage: Lineage, limits: Limits,
                 archive: Callable[[], int | None], budget: ReadyBudget, target: int = 3, files: int = 0) -> None:
        self.budget = budget
        self.sandbox = sandbox
        self.snapshot = snapshot
        self.lineage = lineage
        self.limits = limits
        self.archive = archive
        self.birth_timeout_s = min(BIRTH_TIMEOUT_S + files * RESTORE_S_PER_FILE, MAX_BIRTH_S)
        self.target = target
        self.chunk = target
        self.ready: list[Branch] = []
        self.sets: list[NsSet] = []
        self._preparing: asyncio.Task[None] | None = None
        self._filling: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one batch at a time: the snapshot and the zygote answer in turn
        self.closed = False

    def _parent_userns(self) -> int | None:
        if self.lineage.depth == 0:
            return None
        return os.open(f"/proc/{self.snapshot.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)

    async def _prepare(self, count: int, on_set: Callable[[NsSet], None] | None = None) -> tuple[list[NsSet], list[str]]:
        uids = ALLOCATOR.take_many(count)
        handed: set[int] = set()

        def hand(ns: NsSet) -> None:
            handed.add(ns.uid)
            if on_set is not None:
                on_set(ns)

        try:
            made, errors = await self.sandbox.prepare(self.lineage.uid, uids, self.limits.disk_bytes,
                                                      self._parent_userns(), hand if on_set is not None else None)
        except (SandboxFault, OSError) as exc:
            made, errors = [], [str(exc)]
        for uid in set(uids) - {s.uid for s in made} - handed:
            ALLOCATOR.release(uid)
        if self.closed:
            for ns in made:
                self._drop_set(ns)
            return [], errors
        return made, errors

    def _prepare_soon(self) -> None:
        """Make the next batch's namespace sets (at most ``AHEAD_SETS``) after this batch came up."""
        if self.closed or (self._preparing is not None and not self._preparing.done()):
            return
        missing = min(self.chunk, AHEAD_SETS) - len(self.sets)
        if missing > 0:
            self._preparing = asyncio.create_task(self._prepare_ahead(missing))

    async def _prepare_ahead(self, count: int) -> None:
        made, errors = await self._prepare(count)
        self.sets.extend(made)
        if errors:
            log.warning("preparing branch namespaces: %s", "; ".join(errors[:3]))

    def _drop_set(self, ns: NsSet) -> None:
        ns.close()
        ALLOCATOR.release(ns.uid)

    async def _grow(self, count: int) -> list[str]:
        """Fork, place and isolate ``count`` more children; the errors of those that did not come up.
        Children come from the snapshot a few at a time and each comes up as soon as it and a namespace
        set are there, while the zygote makes the sets that were not made ahead. Called with ``_lock``."""
        iids = [f"i-{secrets.token_hex(6)}" for _ in range(count)]
        warming = asyncio.create_task(asyncio.to_thread(self.sandbox.cgroups.warm))
        sets: asyncio.Queue[NsSet | None] = asyncio.Queue()
        ahead, self.sets = self.sets[:count], self.sets[count:]
        for ns in ahead:
            sets.put_nowait(ns)
        preparing = asyncio.create_task(self._sets_for(count - len(ahead), sets)) if count > len(ahead) else None
        errors: list[str] = []
        coming: list[asyncio.Task[Branch]] = []
        try:
            async for proc, error in stream_branches(self.snapshot, iids):
                if proc is None:
                    errors.append(error)
                    continue
                self.sandbox.members.add(proc.key)
                coming.append(asyncio.create_task(self._bring_up(proc, sets, warming)))
        except (SandboxFault, ChannelClosed, OSError) as exc:
            errors.append(f"the snapshot did not fork: {exc}")
        if preparing is not None:
            errors += await preparing
        for _ in coming:
            sets.put_nowait(None)  # a child still waiting gets no set: none will come
        born = await asyncio.gather(*coming, return_exceptions=True)
        while not sets.empty():
            left = sets.get_nowait()
            if left is not None:
                if self.closed:
                    self._drop_set(left)
                else:
                    self.sets.append(left)
        for outcome in born:
            if isinstance(outcome, BaseException):
                errors.append(f"branch did not come up: {outcome}")
            elif self.closed:
                await self._discard(outcome)
            else:
                self.ready.append(outcome)
        self._prepare_soon()
        return errors

    async def _sets_for(self, missing: int, sets: asyncio.Queue[NsSet | None]) -> list[str]:
        """``missing`` namespace sets into ``sets`` as they come: first those of the batch being made ahead (the
        zygote makes one batch at a time: a batch asked for now would wait behind it), then any still missing,
        made now. The errors of those that were not made."""
        if self._preparing is not None and not self._preparing.done():
            await asyncio.gather(self._preparing, return_exceptions=True)
            came, self.sets = self.sets[:missing], self.sets[missing:]
            for ns in came:
                sets.put_nowait(ns)
            missing -= len(came)
        if missing <= 0:
            return []
        _made, errors = await self._prepare(missing, sets.put_nowait)
        return errors

    async def _bring_up(self, proc: SandboxProcess, sets: asyncio.Queue[NsSet | None],
                        warming: asyncio.Task[None]) -> Branch:
        """One child: into its cgroup (on a thread, while it waits for a set), then into its namespaces."""
        await asyncio.gather(warming, return_exceptions=True)
        placing = asyncio.create_task(asyncio.to_thread(
            self.sandbox.place, proc, self.limits.processes, self.limits.cgroup_memory_bytes))
        ns = await sets.get()
        if ns is None:
            await asyncio.gather(placing, return_exceptions=True)
            await self.sandbox.kill(proc)
            raise SandboxError("no namespaces were made for it")
        try:
            await placing
        except OSError as exc:
            sets.put_nowait(ns)
            await self.sandbox.kill(proc)
            raise SandboxError(f"could not put it in its cgroup: {exc}") from exc
        return await self._birth(proc, ns)

    async def _birth(self, proc: SandboxProcess, ns: NsSet) -> Branch:
        lineage = self.lineage.child(ns.uid)
        try:
            await birth(proc, ns, lineage, self.archive(), self.birth_timeout_s)
        except BaseException:
            await self.sandbox.kill_then(proc, lambda: ALLOCATOR.release(ns.uid))
            raise
        self.budget.used += 1
        return Branch(proc, lineage)

    def fill_soon(self) -> None:
        """Bring the ready children up to ``target`` in the background, a batch of ``chunk`` at a time."""
        if self.closed or (self._filling is not None and not self._filling.done()):
            return
        if min(self.target - len(self.ready), self.budget.room()) > 0:
            self._filling = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        while not self.closed:
            async with self._lock:
                missing = min(self.target - len(self.ready), self.budget.room(), self.chunk)
                if missing <= 0:
                    return
                errors = await self._grow(missing)
            if errors:
                log.warning("preparing branches: %s", "; ".join(errors[:3]))
                return

    async def take(self, count: int) -> tuple[list[Branch], list[str]]:
        """``count`` isolated children (made now for what is not ready); errors for those that failed."""
        if self.lineage.depth + 1 > MAX_DEPTH:
            raise SandboxError(f"this snapshot is {self.lineage.depth} branch generations deep and the kernel "
                               f"nests user namespaces at most {MAX_DEPTH} levels")
        errors: list[str] = []
        if len(self.ready) < count:
            async with self._lock:  # waits for a batch in progress, which may bring enough
                if len(self.ready) < count:
                    errors = await self._grow(count - len(self.ready))
        taken, self.ready = self.ready[:count], self.ready[count:]
        self.budget.used -= len(taken)
        self.chunk = max(1, min(MAX_READY, count))
        self.target = max(1, min(MAX_READY, 2 * count))
        return taken, errors

    async def trim(self) -> None:
        """Let the ready children go (the snapshot has not been branched for a while)."""
        ready, self.ready = self.ready, []
        for branch in ready:
            await self._discard(branch)

    async def _discard(self, branch: Branch) -> None:
        self.budget.used -= 1
        uid = branch.lineage.uid
        await self.sandbox.kill_then(branch.proc, lambda: ALLOCATOR.release(uid))

    async def close(self) -> None:
        self.closed = True
        for task in (self._filling, self._preparing):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        sets, self.sets = self.sets, []
        for ns in sets:
            self._drop_set(ns)
        ready, self.ready = self.ready, []
        for branch in ready:
            await self._discard(branch)


def _uids_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    return []


async def birth(proc: SandboxProcess, ns: NsSet, lineage: Lineage, archive_fd: int | None,
                timeout_s: float = BIRTH_TIMEOUT_S) -> None:
    """Isolate a freshly forked child (``proc``, already in its cgroup) in ``ns``; consumes ``ns`` and
    ``archive_fd``. Raises SandboxError when the child did not come up isolated."""
    user_ino = os.fstat(ns.fds[0]).st_ino
    fds = ns.fds + ([archive_fd] if archive_fd is not None else [])
    try:
        async with asyncio.timeout(timeout_s):
            await proc.send({"op": "isolate", "uid": lineage.uid}, fds)
            ns.close()
            if archive_fd is not None:
                os.close(archive_fd)
                archive_fd = None
            reply, _ = await proc.recv()
    except TimeoutError:
        raise SandboxError(f"branch {proc.key} did not come up within {timeout_s:.0f} s") from None
    finally:
        ns.close()
        if archive_fd is not None:
            os.close(archive_fd)
    if reply.get("ready") != proc.key:
        _frames.ok(reply, proc.key, "isolating a branch")
        raise ProtocolError(f"branch {proc.key} answered {str(reply)[:200]} instead of ready")
    try:
        isolated = _uids_of(proc.pid) == [ns.uid] * 4 and os.stat(f"/proc/{proc.pid}/ns/user").st_ino == user_ino
    except OSError:
        isolated = False
    if not isolated:
        raise ProtocolError(f"branch {proc.key} said it was ready but is not in its own namespaces and uid")


async def stream_branches(snapshot: SandboxProcess, iids: list[str]) -> AsyncIterator[
        tuple[SandboxProcess | None, str]]:
    """Ask a snapshot process to fork one child per iid; yield each child's channel (it said hello) as
    it comes, or (None, why) for one that did not."""
    async for reply, fds in snapshot.replies({"op": "branch", "children": [{"iid": i} for i in iids]},
                                             max_fds=_STREAM_FDS):
        _frames.ok(reply, snapshot.key, "branch")
        for error in reply.get("errors", []) if isinstance(reply.get("errors"), list) else []:
            if isinstance(error, dict):
                yield None, str(error.get("message", ""))[:300]
        named = _frames.strings(reply, "iids", snapshot.key)
        for fd in fds[len(named):]:
            os.close(fd)
        for iid, fd in zip(named, fds):
            if iid not in iids:
                os.close(fd)
                continue
            try:
                yield await SandboxProcess.from_hello(fd, iid), ""
            except (SandboxFault, ChannelClosed, OSError) as exc:
                yield None, f"branch did not come up: {exc}"
