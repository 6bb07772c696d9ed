"""Live instances in sandboxes: the part morph and modal share.

A pool of pre-started sandboxes (bubblewrap + a zygote that already loaded Python) makes Start fast;
each Start takes a sandbox of its own and spawns its member under a fresh uid. Execute streams output
and honours its timeout (interrupt, then stop the instance if the code ignores the interrupt). The
daemon trusts nothing the instance sends: frames are checked, output is capped here as well as inside,
and an instance that breaks the protocol is stopped. Idle members are reaped; a sandbox ends when its
last member is gone. Calls on stopped ids say why. Calls on one instance run one at a time, and at most
MAX_WAITING_CALLS wait for their turn: the next is refused at once, so a slow instance slows only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldrt import errors as err
from worldrt.providers.sandbox import _frames, _workspace
from worldrt.providers.sandbox._archive import (
    OVERHEAD_BYTES,
    ArchiveStore,
    ArchiveTooLarge,
)
from worldrt.providers.sandbox._branches import Lineage
from worldrt.providers.sandbox._cgroup import Cgroups
from worldrt.providers.sandbox._images import DEFAULT, ImageInfo, ImageStore
from worldrt.providers.sandbox._output import OutputBudget
from worldrt.providers.sandbox._process import (
    ChannelClosed,
    ProtocolError,
    SandboxError,
    SandboxFault,
    SandboxProcess,
)
from worldrt.providers.sandbox._processes import ProcessSettings, ProcessTable
from worldrt.providers.sandbox._sandbox import Limits, Sandbox
from worldrt.providers.sandbox._uids import ALLOCATOR
from worldrt.providers.sandbox._watch import Change, Watch, WatchLimits
from worldrt.providers.sandbox._workspace import NewFile, Opened

log = logging.getLogger("worldrt.sandbox")

DEFAULT_TIMEOUT_MS = 300_000
INTERRUPT_GRACE_S = 1.0
_TOMBSTONES = 100_000
# Output the daemon takes from one run: what the agent keeps (2 MiB) and its truncation note, with room.
MAX_RUN_OUTPUT = 2 * 1024 * 1024 + 64 * 1024
SNAPSHOT_BUDGET_BYTES = 8 * 1024**3
# How long a member's disk's archive may take once it answered, and its answer (an archive's comes once the
# archive is written).
ARCHIVE_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 2 * ARCHIVE_TIMEOUT_S
# Warm sandboxes started side by side when the pool refills (all of a small pool's at open).
REFILL_AT_ONCE = 4
# Images other than the default keep warm sandboxes too, for the most recently started of them.
IMAGE_POOLS = 4
# Calls on one instance run one at a time; at most this many more wait for their turn (the rest are refused).
MAX_WAITING_CALLS = 8


class InstanceLock:
    """One call at a time on an instance, and at most ``limit`` calls waiting for their turn: the next one
    is refused with RESOURCE_EXHAUSTED at once, so a slow instance slows only its own callers and holds
    no more than ``limit`` requests in the daemon's memory. Used as ``async with inst.lock``."""

    def __init__(self, owner: str, limit: int = MAX_WAITING_CALLS) -> None:
        self.owner = owner
        self.limit = limit
        self.waiting = 0
        self._lock = asyncio.Lock()

    def locked(self) -> bool:
        return self._lock.locked()

    async def __aenter__(self) -> None:
        if self._lock.locked() and self.waiting >= self.limit:
            raise err.ResourceExhausted(
                f"instance {self.owner} is busy: one call runs on it and {self.waiting} more wait, the limit per "
                f"instance ({self.limit}); calls on one instance run one at a time, so wait for them or use "
                f"another instance")
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


@dataclass
class Member:
    """Something that lives in a sandbox: a live instance, a frozen snapshot or a worker."""

    id: str
    sandbox: Sandbox
    proc: SandboxProcess
    limits: Limits
    ttl_s: int
    lineage: Lineage
    # The digest of the image the member runs from.
    image: str = ""
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
    lock: InstanceLock = field(init=False)
    # Its long-lived processes (StartProcess), made at the first.
    processes: ProcessTable | None = field(default=None, repr=False)
    # The watchers of its files (WatchFiles) now running; closed when it ends.
    watches: set[Watch] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.lock = InstanceLock(self.id)

    def running_processes(self) -> list[str]:
        return self.processes.running_ids() if self.processes is not None else []


@dataclass(frozen=True)
class Warm:
    """A pre-started sandbox with its member spawned (default limits), waiting for a Start."""

    sandbox: Sandbox
    proc: SandboxProcess
    uid: int


@dataclass
class WarmPool:
    """Warm sandboxes of one image."""

    image: ImageInfo
    size: int
    warm: list[Warm] = field(default_factory=list)
    refilling: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" or "stderr"
    text: str | bytes  # bytes when the run was asked for them (RunInput.as_bytes)


@dataclass(frozen=True)
class RunInput:
    """What a run gets besides its code (issue 20): a working folder in the workspace (checked by the
    instance's own walk), bytes for its stdin (capped by the caller), and output as bytes."""

    cwd: str = ""
    stdin: bytes | None = None
    as_bytes: bool = False


@dataclass(frozen=True)
class Done:
    frame: dict[str, Any]


def new_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(6)}"


class OutputFlood(ProtocolError):
    """An instance sent more output in one run than any honest run can."""


class UidRefs:
    """A uid is free again when the last member running as it is gone (an instance shares its uid with
    its snapshots)."""

    def __init__(self) -> None:
        self._refs: Counter[int] = Counter()

    def hold(self, uid: int) -> None:
        self._refs[uid] += 1

    def drop(self, uid: int) -> None:
        self._refs[uid] -= 1
        if self._refs[uid] <= 0:
            del self._refs[uid]
            ALLOCATOR.release(uid)


class InstanceEngine:
    """Instances in sandboxes. Subclasses add what their provider does beyond start/execute/stop."""

    provider_id = "sandbox"

    def __init__(self, state_dir: Path, *, pool_size: int = 2, max_instances: int = 2048,
                 default_ttl_s: int = 3600, max_lifetime_s: int = 0, reap_interval_s: float = 1.0,
                 snapshot_budget_bytes: int = SNAPSHOT_BUDGET_BYTES, images: ImageStore | None = None) -> None:
        self.state_dir = state_dir
        self.images = images or ImageStore.beside(state_dir)
        self.default_image: ImageInfo | None = None
        self._image_pools: OrderedDict[str, WarmPool] = OrderedDict()
        self.pool_size = pool_size
        self.max_instances = max_instances
        self.default_ttl_s = default_ttl_s
        self.max_lifetime_s = max_lifetime_s
        self.reap_interval_s = reap_interval_s
        self.instances: dict[str, LiveInstance] = {}
        self.archives = ArchiveStore(state_dir / "snapshots", snapshot_budget_bytes)
        self.uids = UidRefs()
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._pool: list[Warm] = []
        # Called when a Start finds no warm sandbox ready (the daemon counts it with metrics on).
        self.on_pool_miss: Callable[[], None] | None = None
        self._refilling: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._removing_pools: set[asyncio.Task[None]] = set()
        self.cgroups = Cgroups("unopened", [])
        self.process_settings = ProcessSettings()
        self._output_budget: OutputBudget | None = None

    # lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        self.cgroups = Cgroups.open(f"worldrt-{self.provider_id}-{os.getpid()}")
        await asyncio.to_thread(self.images.prepare)
        self.default_image = self.images.resolve(DEFAULT)
        # As the refill task, so a refill a take schedules meanwhile joins it instead of racing it.
        self._refilling = asyncio.create_task(self._refill(retry=False))
        await self._refilling
        self._reaper = asyncio.create_task(self._reap_forever())

    async def close(self) -> int:
        """Stop every instance and sandbox; return how many instances were running."""
        self._closing.set()
        if self._reaper:
            self._reaper.cancel()
        if self._refilling:
            await asyncio.gather(self._refilling, return_exceptions=True)
        stopped = len(self.instances)
        for iid in list(self.instances):
            await self.drop_instance(iid, "the provider shut down")
        await self._close_more()
        pool, self._pool = self._pool, []
        for warm in pool:
            await self._discard(warm)
        for digest in list(self._image_pools):
            await self.drop_image_pool(digest)
        await asyncio.gather(*self._removing_pools, return_exceptions=True)
        await asyncio.to_thread(self.cgroups.close)
        return stopped

    async def _close_more(self) -> None:
        """Release what a subclass holds besides instances (snapshots)."""

    @property
    def isolation(self) -> dict[str, Any]:
        return {"sandbox": "bubblewrap", "network": "none (a loopback of its own)", "system_dirs": "read-only",
                "uid": "one per instance and per branch, unique among live sandboxes on the machine",
                "namespaces": "pid, mount, network, ipc and uts per sandbox; user, mount, network and ipc "
                              "per branch",
                "disk": "workspace, /tmp and /dev/shm on a tmpfs of the instance's disk quota, in memory",
                "python": "the base interpreter and standard library, its site-packages hidden, and the instance's "
                          "image read-only at /opt/python-env (StartRequest.image; default: numpy)",
                "files": "WriteFiles/ReadFile/ListFiles done by the instance itself, confined to /workspace",
                "seccomp": "no keyrings, io_uring, bpf, ptrace, modules, perf, userfaultfd or new namespaces",
                "cgroups": self.cgroups.controllers, "rlimits": ["memory", "cpu", "file_size"]}

    # pool --------------------------------------------------------------------------------------
    def image(self, ref: str) -> ImageInfo:
        """The image a request names ("" for the default); NotFound when there is none."""
        if not ref.strip() and self.default_image is not None:
            return self.default_image
        return self.images.resolve(ref)

    def images_in_use(self) -> set[str]:
        return {inst.image for inst in self.instances.values()}

    async def _new_sandbox(self, image: ImageInfo | None = None) -> Sandbox:
        image = image or self.default_image
        assert image is not None, "the engine is not open"
        return await asyncio.to_thread(Sandbox.start, new_id("sb"), self.state_dir, self.cgroups,
                                       self.images.layer(image.digest), image.digest)

    async def _warm(self, image: ImageInfo | None = None) -> Warm:
        """A started sandbox whose member (with the default limits) is already spawned and placed."""
        sandbox = await self._new_sandbox(image)
        uid = ALLOCATOR.take()
        try:
            proc = await self._spawn(sandbox, new_id("i"), uid, Limits())
        except BaseException:
            await sandbox.close()
            ALLOCATOR.release(uid)
            raise
        return Warm(sandbox, proc, uid)

    async def _spawn(self, sandbox: Sandbox, iid: str, uid: int, limits: Limits) -> SandboxProcess:
        proc = await sandbox.spawn(iid, uid, limits)
        sandbox.members.add(proc.key)
        try:
            await asyncio.to_thread(sandbox.place, proc, limits.processes, limits.cgroup_memory_bytes)
        except BaseException:
            await sandbox.kill(proc)
            raise
        return proc

    async def _refill(self, *, retry: bool = True) -> None:
        """Fill the warm pool, up to REFILL_AT_ONCE sandboxes starting side by side (a start waits on its
        processes more than it computes). A sandbox that fails to start (a busy machine) is tried again,
        backing off, until the pool is full or the engine closes; without ``retry`` (at open) the first round
        with a failure ends it."""
        delay_s = 0.1
        while len(self._pool) < self.pool_size and not self._closing.is_set():
            missing = min(self.pool_size - len(self._pool), REFILL_AT_ONCE)
            outcomes = await asyncio.gather(*(self._warm_into_pool() for _ in range(missing)), return_exceptions=True)
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            unexpected = [f for f in failures if not isinstance(f, (SandboxFault, ChannelClosed, OSError))]
            if unexpected:
                raise unexpected[0]
            if not failures:
                delay_s = 0.1
                continue
            log.error("could not pre-start a sandbox: %s", failures[0])
            if not retry:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay_s)
            delay_s = min(delay_s * 2, 5.0)

    async def _warm_into_pool(self) -> None:
        """One more warm sandbox, in the pool (so in the engine's hands) as soon as it is up."""
        self._pool.append(await self._warm())

    def _schedule_refill(self) -> None:
        if self._refilling is None or self._refilling.done():
            self._refilling = asyncio.create_task(self._refill())

    async def _refill_image(self, pool: WarmPool) -> None:
        while len(pool.warm) < pool.size and not self._closing.is_set() and \
                self._image_pools.get(pool.image.digest) is pool:
            try:
                pool.warm.append(await self._warm(pool.image))
            except (SandboxFault, ChannelClosed, OSError) as exc:
                log.error("could not pre-start a sandbox of image %s: %s", pool.image.digest[:12], exc)
                return
        if self._image_pools.get(pool.image.digest) is not pool:
            for warm in pool.warm:
                await self._discard(warm)
            pool.warm = []

    def _image_pool(self, image: ImageInfo) -> WarmPool:
        """The warm pool of an image other than the default: kept for the most recent few, refilled in the
        background after each take."""
        pool = self._image_pools.get(image.digest)
        if pool is None:
            pool = self._image_pools[image.digest] = WarmPool(image, max(1, min(self.pool_size, 2)))
            while len(self._image_pools) > IMAGE_POOLS:
                oldest = next(iter(self._image_pools))
                task = asyncio.create_task(self.drop_image_pool(oldest))
                self._removing_pools.add(task)
                task.add_done_callback(self._removing_pools.discard)
        self._image_pools.move_to_end(image.digest)
        if (pool.refilling is None or pool.refilling.done()) and not self._closing.is_set():
            pool.refilling = asyncio.create_task(self._refill_image(pool))
        return pool

    def prewarm(self, image: ImageInfo) -> None:
        """Start warm sandboxes of an image (one just built), so its first Start is as fast as the next."""
        if self.default_image is not None and image.digest != self.default_image.digest:
            self._image_pool(image)

    def warm_count(self) -> int:
        """Warm sandboxes ready now, of every image."""
        return len(self._pool) + sum(len(pool.warm) for pool in list(self._image_pools.values()))

    async def drop_image_pool(self, digest: str) -> None:
        pool = self._image_pools.pop(digest, None)
        if pool is None:
            return
        if pool.refilling is not None:
            await asyncio.gather(pool.refilling, return_exceptions=True)
        warm, pool.warm = pool.warm, []
        for w in warm:
            await self._discard(w)

    async def take_member(self, limits: Limits, image: ImageInfo | None = None) -> tuple[Sandbox, SandboxProcess, int]:
        """A sandbox of its own for a new instance, with its member spawned under a fresh uid: from the warm
        pool of its image when the limits are the default ones, else spawned now."""
        if image is not None and self.default_image is not None and image.digest != self.default_image.digest:
            pool = self._image_pool(image)
            warms = pool.warm
        else:
            image, warms = None, self._pool
        while warms:
            warm = warms.pop()
            if image is None:
                self._schedule_refill()
            else:
                self._image_pool(image)
            if not warm.sandbox.alive:
                await self._discard(warm)
                continue
            if limits == Limits():
                return warm.sandbox, warm.proc, warm.uid
            # Other limits: the same sandbox, its member spawned again with them.
            await (await warm.sandbox.kill(warm.proc))  # the zygote respawns only once its member is gone
            ALLOCATOR.release(warm.uid)
            sandbox = warm.sandbox
            break
        else:
            if self.on_pool_miss is not None:
                self.on_pool_miss()
            if image is None:
                self._schedule_refill()
            sandbox = await self._new_sandbox(image)
        uid = ALLOCATOR.take()
        try:
            return sandbox, await self._spawn(sandbox, new_id("i"), uid, limits), uid
        except BaseException:
            await sandbox.close()
            ALLOCATOR.release(uid)
            raise

    async def _discard(self, warm: Warm) -> None:
        await warm.sandbox.close()
        ALLOCATOR.release(warm.uid)

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
            raise err.FailedPrecondition(f"instance {iid} is stopped: {self._gone[iid]}", reason=err.Reason.INSTANCE_GONE)
        raise err.NotFound(f"no instance {iid!r} on {self.provider_id} (it never existed here)",
                           reason=err.Reason.INSTANCE_NOT_FOUND)

    def check_room(self, count: int) -> None:
        if len(self.instances) + count > self.max_instances:
            raise err.ResourceExhausted(
                f"{count} more instance(s) would exceed this daemon's limit of {self.max_instances} live instances")

    # operations --------------------------------------------------------------------------------
    async def start(self, limits: Limits, ttl_s: int, metadata: dict[str, str],
                    prepare: Callable[[SandboxProcess], Awaitable[None]] | None = None,
                    image: ImageInfo | None = None) -> LiveInstance:
        """Start an instance in a sandbox of its own, running from ``image`` (the default one when None);
        ``prepare(proc)`` may fill its disk before it is used."""
        self.check_room(1)
        try:
            sandbox, proc, uid = await self.take_member(limits, image)
        except (SandboxFault, ChannelClosed, OSError) as exc:
            raise err.Unavailable(f"could not start an instance: {exc}") from exc
        try:
            if prepare is not None:
                await prepare(proc)
        except BaseException as exc:  # a Start cancelled meanwhile (its caller's deadline) leaves no sandbox either
            await sandbox.close()
            ALLOCATOR.release(uid)
            if isinstance(exc, ArchiveTooLarge):
                raise err.ResourceExhausted(str(exc)) from exc
            if isinstance(exc, (SandboxFault, ChannelClosed, OSError)):
                raise err.Unavailable(f"could not start an instance: {exc}") from exc
            raise
        self.uids.hold(uid)
        inst = LiveInstance(proc.key, sandbox, proc, limits, ttl_s or self.default_ttl_s, Lineage(uid),
                            image=sandbox.image, metadata=metadata)
        self.instances[inst.id] = inst
        return inst

    async def stop(self, iid: str, reason: str = "stopped by Stop") -> LiveInstance:
        inst = self.instance(iid)
        await self.drop_instance(iid, reason)
        return inst

    # files -------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _files_of(self, iid: str, timeout_s: float | None = _workspace.FILES_TIMEOUT_S) -> AsyncIterator[
            LiveInstance]:
        """The instance, held for one file request; one that breaks the protocol, dies or stalls is stopped."""
        inst = self.instance(iid)
        async with inst.lock:
            self.instance(iid)
            inst.touch()
            try:
                async with asyncio.timeout(timeout_s):
                    yield inst
            except TimeoutError:
                await self.drop_instance(iid, "it did not answer a file request in time")
                raise err.DeadlineExceeded(f"instance {iid} did not answer the file request within {timeout_s:.0f} s; "
                                           f"it is stopped", reason=err.Reason.INSTANCE_GONE) from None
            except ProtocolError as exc:
                await self.drop_instance(iid, f"it broke the sandbox protocol: {exc}")
                raise err.Aborted(f"{exc}; the instance is stopped", reason=err.Reason.INSTANCE_GONE) from None
            except (ChannelClosed, OSError, SandboxFault) as exc:
                await self.drop_instance(iid, "its process exited during a file request")
                raise err.Aborted(f"instance {iid} exited during the file request ({exc}); it is stopped",
                                  reason=err.Reason.INSTANCE_GONE) from None
            finally:
                inst.touch()

    async def write_files(self, iid: str, files: list[NewFile]) -> tuple[int, int]:
        """Write files into the instance's workspace (by the instance itself): (files, bytes)."""
        _workspace.check_writes(files, self.instance(iid).limits)
        async with self._files_of(iid) as inst:
            return await _workspace.write(inst.proc, files)

    async def list_files(self, iid: str, path: str) -> tuple[str, list[dict[str, Any]], bool]:
        async with self._files_of(iid) as inst:
            return await _workspace.listing(inst.proc, path)

    async def stat_file(self, iid: str, path: str) -> dict[str, Any]:
        async with self._files_of(iid) as inst:
            return await _workspace.stat(inst.proc, path)

    async def make_directory(self, iid: str, path: str, parents: bool, mode: int) -> tuple[dict[str, Any], bool]:
        async with self._files_of(iid) as inst:
            return await _workspace.make_directory(inst.proc, path, parents, mode)

    async def move_file(self, iid: str, source: str, destination: str, overwrite: bool) -> dict[str, Any]:
        async with self._files_of(iid) as inst:
            return await _workspace.move(inst.proc, source, destination, overwrite)

    async def remove_file(self, iid: str, path: str, recursive: bool) -> tuple[str, int]:
        async with self._files_of(iid) as inst:
            return await _workspace.remove(inst.proc, path, recursive)

    async def watch_files(self, iid: str, path: str, recursive: bool, timeout_s: int,
                          limits: WatchLimits) -> AsyncIterator[Change]:
        """A watcher of a folder in the instance: "ready" once it is in place, then its changes, then
        "ended" (its folder went, the timeout, or the instance ended)."""
        _workspace.check_path(path, empty=True)
        if timeout_s < 0:
            raise err.InvalidArgument("timeout_s must not be negative")
        async with self._files_of(iid) as inst:
            if len(inst.watches) >= limits.per_instance:  # checked under the instance's lock: one at a time
                raise err.ResourceExhausted(f"instance {iid} has {len(inst.watches)} watchers, its maximum; end "
                                            f"one (cancel its stream) before starting another")
            _folder, fd = await _workspace.watch(inst.proc, path, recursive, limits.max_dirs)
            try:
                watch = Watch(fd, f"a watcher of instance {iid}")
            except OSError:
                os.close(fd)
                raise ProtocolError(f"instance {iid} answered a watch with a descriptor that is not a socket") \
                    from None
            inst.watches.add(watch)
        seconds = min(timeout_s or limits.max_s, limits.max_s)
        try:
            async with asyncio.timeout(seconds):
                async for change in watch.changes():
                    yield change
                    if change.kind == "ended":
                        return
        except TimeoutError:
            yield Change("ended", message=f"the watch reached its timeout of {seconds} s")
        except ProtocolError as exc:
            raise err.Aborted(f"{exc}; the watch is ended") from None
        except (ChannelClosed, OSError):
            yield Change("ended", message=watch.ended or "the watcher in the instance stopped")
        finally:
            inst.watches.discard(watch)
            watch.close()

    async def read_file(self, iid: str, path: str, offset: int, length: int,
                        cap: int | None = None) -> AsyncIterator[Opened | bytes]:
        """The file's size and mode, then its bytes in chunks; at most ``cap`` bytes (the instance's file
        size limit when None)."""
        async with self._files_of(iid, timeout_s=None) as inst:
            limit = inst.limits.file_size_mb * 1024 * 1024 if cap is None else cap
            async with asyncio.timeout(_workspace.FILES_TIMEOUT_S):
                opened, chunks = await _workspace.read(inst.proc, path, offset, length, limit)
            yield opened
            try:
                while True:
                    async with asyncio.timeout(_workspace.FILES_TIMEOUT_S):
                        chunk = await anext(chunks, None)
                    if chunk is None:
                        return
                    yield chunk
            finally:
                await chunks.aclose()

    # processes ---------------------------------------------------------------------------------
    def processes(self, iid: str) -> ProcessTable:
        """The table of the instance's long-lived processes (made at its first use); the call touches it."""
        inst = self.instance(iid)
        inst.touch()
        if inst.processes is None:
            if self._output_budget is None:
                self._output_budget = OutputBudget(self.process_settings.instance_output,
                                                   self.process_settings.total_output)
            inst.processes = ProcessTable(iid, self.process_settings,
                                          lambda key: self._open_supervisor(iid, key), self._output_budget)
        return inst.processes

    async def _open_supervisor(self, iid: str, key: str) -> SandboxProcess:
        """Have the instance fork the supervisor of its processes (one turn of the instance: it waits for a
        running Execute to end); its channel."""
        async with self._files_of(iid) as inst:
            try:
                _reply, fds = await inst.proc.request({"op": "procman", "key": key}, max_fds=1)
            except (ChannelClosed, ProtocolError):
                raise
            except SandboxError as exc:  # its refusal (a fork past its process limit): the instance is fine
                raise err.ResourceExhausted(f"instance {iid} could not start the supervisor of its processes: "
                                            f"{exc}") from None
            if len(fds) != 1:
                raise ProtocolError(f"instance {iid} answered procman without a channel")
            return await SandboxProcess.from_hello(fds[0], key, hold_pid=True)

    async def execute(self, iid: str, code: str, language: str, timeout_ms: int,
                      env: dict[str, str], *, collect: bool = False,
                      argv: list[str] | None = None, given: RunInput | None = None) -> AsyncIterator[Output | Done]:
        """Run code in the instance, yielding its output as it is produced and then its result. With
        ``collect`` the agent keeps the output and sends it with the result (one frame, not one per line)
        unless there is too much of it; either way the output comes before the result.

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
            feeding: _workspace.Feed | None = None
            written = 0
            try:
                given = given or RunInput()
                _workspace.check_path(given.cwd, empty=True)
                request = {"op": "exec", "code": code, "language": language or "python", "env": env,
                           "collect": collect, "argv": list(argv or []), "cwd": given.cwd,
                           "bytes": given.as_bytes, "stdin": given.stdin is not None}
                if given.stdin is None:
                    await inst.proc.send(request)
                else:
                    feeding = _workspace.feed(given.stdin)
                    await inst.proc.send(request, [feeding.read_end])
                    feeding.start()
                while True:
                    frame, _ = await inst.proc.recv()
                    event, payload = _frames.output_or_done(frame, f"instance {iid}")
                    if event == "done":
                        finished = True
                        if payload["refused"]:
                            inst.touch()
                            raise _workspace.refusal_error(payload["refused"], payload["error"])
                        outputs = [("stdout", payload.pop("stdout")), ("stderr", payload.pop("stderr"))]
                    else:
                        outputs = [(event, payload)]
                    for stream, text in outputs:
                        written += len(text)
                        if written > MAX_RUN_OUTPUT:
                            raise OutputFlood(f"instance {iid} wrote more than {MAX_RUN_OUTPUT} characters of "
                                              f"output in one run, past the 2 MiB every run is cut at")
                        if text:
                            yield Output(stream, text)
                    if event != "done":
                        continue
                    if payload["interrupted"]:
                        raise err.DeadlineExceeded(
                            f"code ran past its timeout of {timeout_s * 1000:.0f} ms and was interrupted; "
                            f"instance {iid} is still running with its state")
                    inst.touch()
                    yield Done(payload)
                    return
            except ProtocolError as exc:
                finished = True
                await self.drop_instance(iid, f"it broke the sandbox protocol: {exc}")
                if isinstance(exc, OutputFlood):
                    raise err.ResourceExhausted(f"{exc}; the instance is stopped", reason=err.Reason.INSTANCE_GONE) from None
                raise err.Aborted(f"{exc}; the instance is stopped", reason=err.Reason.INSTANCE_GONE) from None
            except (ChannelClosed, OSError, SandboxFault) as exc:
                finished = True
                if phase == "unresponsive":
                    await self.drop_instance(iid, "its code ignored the interrupt at its timeout")
                    raise err.DeadlineExceeded(
                        f"code ran past its timeout of {timeout_s * 1000:.0f} ms and could not be interrupted; "
                        f"instance {iid} was stopped", reason=err.Reason.INSTANCE_GONE) from None
                await self.drop_instance(iid, "its process exited while running code")
                raise err.Aborted(f"instance {iid} exited while running the code ({exc}); it is stopped",
                                  reason=err.Reason.INSTANCE_GONE) from exc
            finally:
                timer.cancel()
                if grace is not None:
                    grace.cancel()
                if feeding is not None:
                    await feeding.stop()
                if not finished and iid in self.instances:
                    await self._abandon_run(inst)

    async def _abandon_run(self, inst: LiveInstance) -> None:
        """The caller went away mid-run: interrupt the code and read to its end, or stop the instance."""
        inst.proc.signal(signal.SIGINT)
        try:
            async with asyncio.timeout(INTERRUPT_GRACE_S):
                while True:
                    event, _ = _frames.output_or_done((await inst.proc.recv())[0], f"instance {inst.id}")
                    if event == "done":
                        return
        except (TimeoutError, ChannelClosed, OSError, SandboxFault):
            await self.drop_instance(inst.id, "its code ran on after its caller went away")

    async def archive(self, member: Member, name: str, op: dict[str, Any]) -> tuple[dict[str, Any], list[int], int]:
        """Have ``member`` archive its disk (``op`` is its request) into the store under ``name``: (its
        reply, the descriptor that came with it (a snapshot's channel), the archive's size)."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        receiving = asyncio.create_task(
            self.archives.receive(name, read_end, member.limits.disk_bytes + OVERHEAD_BYTES))
        try:
            try:
                await member.proc.send(op, [write_end])
            finally:
                os.close(write_end)
            reply, fds = await self._answer(member, op["op"])
            _frames.ok(reply, member.id, op["op"])
            try:
                async with asyncio.timeout(ARCHIVE_TIMEOUT_S):
                    size = await asyncio.shield(receiving)
            except TimeoutError:
                raise SandboxError(f"the archive of the disk did not end within {ARCHIVE_TIMEOUT_S:.0f} s") from None
        except BaseException:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            self.archives.drop(name)
            raise
        return reply, fds, size

    async def _answer(self, member: Member, op: str) -> tuple[dict[str, Any], list[int]]:
        """The member's answer to ``op``. One that does not come in time, or that its caller stops waiting for,
        leaves its channel out of step (a late answer would answer the next request): the member is stopped."""
        answered = False
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                answer = await member.proc.recv(max_fds=1)
            answered = True
            return answer
        except TimeoutError:
            raise SandboxError(f"it did not answer {op} within {ANSWER_TIMEOUT_S:.0f} s (does its code register a "
                               f"fork hook, os.register_at_fork, that blocks?); it is stopped") from None
        finally:
            if not answered:
                await asyncio.shield(self.drop_instance(member.id, f"it did not answer {op}"))

    @staticmethod
    def disk_counts(frame: dict[str, Any], who: str) -> tuple[int, int]:
        """(entries, file bytes) an archive reply claims, checked (they only describe the member's own disk)."""
        return _frames.count(frame, "files", who), _frames.count(frame, "bytes", who)

    # teardown ----------------------------------------------------------------------------------
    async def drop_instance(self, iid: str, reason: str) -> None:
        inst = self.instances.pop(iid, None)
        if inst is None:
            return
        self.bury(iid, reason)
        if inst.processes is not None:
            inst.processes.close(reason)
        for watch in list(inst.watches):
            watch.close(f"instance {iid} ended ({reason})")
        await self.release(inst)

    async def release(self, member: Member) -> None:
        """Stop a member now; its uid is free again once its processes are gone."""
        sandbox = member.sandbox
        uid = member.lineage.uid
        await sandbox.kill_then(member.proc, lambda: self.uids.drop(uid))
        if not sandbox.members:
            await sandbox.close()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval_s)
            try:
                await self.reap(time.monotonic())
            except Exception:
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

