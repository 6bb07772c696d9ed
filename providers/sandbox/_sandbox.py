"""One bubblewrap sandbox: its own pid, network, ipc and mount namespaces, seccomp, and a zygote.

The zygote spawns the sandbox's one member (an instance, or a worker template) under a fresh uid, and
prepares namespace sets for the branches of its lineage (see ``_namespaces``). Every process of the
sandbox that runs code is a member with a cgroup of its own, killed with everything it started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worldrt.providers.sandbox import _bwrap, _wire
from worldrt.providers.sandbox._cgroup import Cgroups
from worldrt.providers.sandbox._process import (
    ChannelClosed,
    ProtocolError,
    SandboxError,
    SandboxFault,
    SandboxProcess,
)
from worldrt.providers.sandbox._uids import HIGH, LOW

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Resource limits of one member: rlimits in its processes, its cgroup's process and memory bounds,
    and the quota of its disk (workspace, /tmp and /dev/shm together, in memory)."""

    memory_mb: int = 1024
    cpu_s: int = 300
    processes: int = 64
    file_size_mb: int = 256
    disk_mb: int = 256

    def as_agent(self) -> dict[str, int]:
        """The rlimits the agent sets; the process count is bounded by the member's pids cgroup."""
        return {"memory_mb": self.memory_mb, "cpu_s": self.cpu_s, "file_size_mb": self.file_size_mb}

    @property
    def disk_bytes(self) -> int:
        return self.disk_mb * MIB

    @property
    def cgroup_memory_bytes(self) -> int:
        """The member's processes and its files (which live in memory) together."""
        return (self.memory_mb + self.disk_mb) * MIB


@dataclass
class NsSet:
    """Namespaces made for one future branch: descriptors of its user, mount, net and ipc namespaces,
    and the fresh uid they map the lineage's uid to."""

    uid: int
    fds: list[int]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class Sandbox:
    """A started sandbox whose zygote answers ``spawn`` (once) and ``nsprep``."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], zygote: socket.socket, cgroups: Cgroups,
                 image: str = "") -> None:
        self.name = name
        # The digest of the image whose layer this sandbox runs from.
        self.image = image
        self._popen = popen
        self._zygote = SandboxProcess(zygote, popen.pid, "zygote")
        self._zygote_lock = asyncio.Lock()
        self.cgroups = cgroups
        self.members: set[str] = set()
        self.zygote_broken = ""
        self._removing: set[asyncio.Task[None]] = set()

    @classmethod
    def start(cls, name: str, log_dir: Path, cgroups: Cgroups, layer: Path, image: str = "",
              family_nproc: int = 4096, timeout_s: float = 10.0) -> Sandbox:
        """Start a sandbox whose Python runs from the image folder ``layer`` (digest ``image``)."""
        ours, theirs = socket.socketpair()
        files = _bwrap.agent_fds()
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / "sandboxes.log", "ab")  # noqa: SIM115 - the sandbox's stderr; closed once it runs
        try:
            popen = subprocess.Popen(
                _bwrap.command(f"bwrap[worldrt {log_dir} {name}]", theirs.fileno(), family_nproc, files,
                                str(layer)),
                executable=_bwrap.bwrap_path(), pass_fds=[theirs.fileno(), *files.values()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        finally:
            theirs.close()
            log.close()
            for fd in files.values():
                os.close(fd)
        ours.settimeout(timeout_s)
        try:
            ready, fds, _ = _wire.recv(ours)
            for fd in fds:
                os.close(fd)
            if not isinstance(ready, dict) or ready.get("ready") is not True:
                raise SandboxError(f"sandbox {name} sent {str(ready)[:200]} instead of ready")
        except (OSError, ValueError, _wire.ChannelClosed, SandboxFault) as exc:
            popen.kill()
            popen.wait()
            ours.close()
            raise SandboxError(f"sandbox {name} did not start: {exc} (see {log_dir / 'sandboxes.log'})") from exc
        ours.settimeout(None)
        return cls(name, popen, ours, cgroups, image)

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None

    async def spawn(self, iid: str, uid: int, limits: Limits) -> SandboxProcess:
        """Fork the sandbox's member from the zygote, under ``uid``, with its disk and rlimits. The caller
        places it in its cgroup (``place``) before it runs anything."""
        async with self._zygote_lock:
            _reply, fds = await self._zygote.request(
                {"op": "spawn", "iid": iid, "uid": uid, "limits": limits.as_agent(), "disk_bytes": limits.disk_bytes},
                max_fds=1)
        if len(fds) != 1:
            raise ProtocolError(f"the zygote of {self.name} answered spawn without a channel")
        return await SandboxProcess.from_hello(fds[0], iid)

    async def prepare(self, owner_uid: int, uids: list[int], disk_bytes: int, parent_userns: int | None,
                      on_set: Callable[[NsSet], None] | None = None,
                      timeout_s: float = 15.0) -> tuple[list[NsSet], list[str]]:
        """Namespace sets for branches of a lineage running as ``owner_uid``, one per uid in ``uids``;
        ``parent_userns`` (a descriptor, consumed) is the lineage's user namespace when it is not the
        sandbox's. The sets share one user namespace; returns the sets made (or hands each to ``on_set``
        as it comes) and the errors."""
        if self.zygote_broken:
            if parent_userns is not None:
                os.close(parent_userns)
            raise SandboxError(self.zygote_broken)
        request = {"op": "nsprep", "owner_uid": owner_uid, "uids": uids, "disk_bytes": disk_bytes,
                   "lo": LOW, "hi": HIGH}
        made: list[NsSet] = []
        count = 0
        errors: list[str] = []
        userns: int | None = None
        try:
            async with self._zygote_lock, asyncio.timeout(timeout_s):
                await self._zygote.send(request, [parent_userns] if parent_userns is not None else None)
                while True:
                    reply, fds = await self._zygote.recv(max_fds=3)
                    if "error" in reply:
                        errors.append(str(reply["error"])[:300])
                    elif reply.get("userns") is True and len(fds) == 1 and userns is None:
                        userns, fds = fds[0], []
                    elif reply.get("uid") in uids and len(fds) == 3 and userns is not None:
                        ns = NsSet(int(reply["uid"]), [os.dup(userns), *fds])
                        fds = []
                        if on_set is None:
                            made.append(ns)
                        else:
                            on_set(ns)
                            count += 1
                    elif not reply.get("done"):
                        raise ProtocolError(f"the zygote answered nsprep with {str(reply)[:200]}")
                    for fd in fds:
                        os.close(fd)
                    if not reply.get("more"):
                        break
        except (TimeoutError, ChannelClosed, OSError, ProtocolError) as exc:
            # The zygote's channel may now hold half an answer: it is not asked again.
            self.zygote_broken = f"the sandbox's zygote did not prepare namespaces: {exc or type(exc).__name__}"
            errors.append(self.zygote_broken)
        finally:
            if parent_userns is not None:
                os.close(parent_userns)
            if userns is not None:
                os.close(userns)
        if len(made) + count < len(uids) and not errors:
            errors.append(f"the zygote made {len(made) + count} of {len(uids)} namespace sets")
        return made, errors

    def adopt(self, proc: SandboxProcess, max_pids: int | None, memory_bytes: int | None) -> None:
        """Put a new process of this sandbox into its own cgroup (before it runs any user code)."""
        self.members.add(proc.key)
        self.place(proc, max_pids, memory_bytes)

    def place(self, proc: SandboxProcess, max_pids: int | None, memory_bytes: int | None) -> None:
        """The cgroup part of ``adopt``; blocking (a move may wait for the kernel), so callers may run it
        on a thread."""
        self.cgroups.create(proc.key, max_pids, memory_bytes)
        self.cgroups.add(proc.key, proc.pid)

    async def kill(self, proc: SandboxProcess) -> asyncio.Task[None]:
        """Stop one member of this sandbox with everything it started: every process of it is sent
        SIGKILL before this returns; the returned task ends when they are gone and its cgroup removed."""
        proc.close()
        self.members.discard(proc.key)
        self.cgroups.stop(proc.key)
        proc.kill_group()
        task = asyncio.create_task(asyncio.to_thread(self.cgroups.remove, proc.key))
        self._removing.add(task)
        task.add_done_callback(self._removing.discard)
        return task

    async def kill_then(self, proc: SandboxProcess, release: Callable[[], None]) -> None:
        """``kill``, and call ``release`` (which frees the member's uid) once its processes are gone."""
        gone = await self.kill(proc)
        gone.add_done_callback(lambda _task: release())

    async def close(self) -> None:
        """End the sandbox: its pid namespace dies with every process in it."""
        self._zygote.close()
        members, self.members = set(self.members), set()
        await asyncio.to_thread(self._end, members)
        await asyncio.gather(*self._removing, return_exceptions=True)

    def _end(self, members: set[str]) -> None:
        if self._popen.poll() is None:
            try:
                os.killpg(self._popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._popen.wait()
        for key in members:
            self.cgroups.kill(key)
