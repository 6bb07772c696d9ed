"""One bubblewrap sandbox: its own pid, network, ipc and mount namespaces, a workspace root, and a zygote."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import _bwrap, _wire
from ._cgroup import PidsCgroups
from ._process import SandboxError, SandboxProcess

_uids = itertools.count()


@dataclass(frozen=True)
class Limits:
    """Resource limits of one instance (rlimits in the process, a pids cgroup where available)."""

    memory_mb: int = 1024
    cpu_s: int = 300
    processes: int = 64
    file_size_mb: int = 256

    def as_agent(self) -> dict[str, int]:
        """The rlimits the agent sets; the process count is bounded by the pids cgroup (or the sandbox's
        RLIMIT_NPROC), since a per-process RLIMIT_NPROC would also cap the branches of its snapshots."""
        return {"memory_mb": self.memory_mb, "cpu_s": self.cpu_s, "file_size_mb": self.file_size_mb}


def _sandbox_uid() -> int:
    """A uid no other sandbox of this host uses now, so RLIMIT_NPROC and file modes separate sandboxes."""
    return 100_000 + (os.getpid() % 4000) * 256 + next(_uids) % 256


class Sandbox:
    """A started sandbox whose zygote is ready to fork instances."""

    def __init__(self, name: str, root: Path, popen: subprocess.Popen[bytes], zygote: socket.socket,
                 uid: int, cgroups: PidsCgroups | None) -> None:
        self.name = name
        self.root = root
        self.uid = uid
        self._popen = popen
        self._zygote = SandboxProcess(zygote, popen.pid, "zygote")
        self.cgroups = cgroups
        self.members: set[str] = set()

    @classmethod
    def start(cls, name: str, state_dir: Path, cgroups: PidsCgroups | None, family_nproc: int = 1024,
              timeout_s: float = 10.0) -> "Sandbox":
        root = state_dir / "sandboxes" / name
        root.mkdir(parents=True, exist_ok=False)
        uid = _sandbox_uid() if os.geteuid() == 0 else os.getuid()
        gid = uid if os.geteuid() == 0 else os.getgid()
        os.chown(root, uid, gid)
        root.chmod(0o700)
        ours, theirs = socket.socketpair()
        log = open(state_dir / "sandboxes.log", "ab")
        try:
            popen = subprocess.Popen(
                _bwrap.command(root, theirs.fileno(), uid, gid, family_nproc),
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        finally:
            theirs.close()
            log.close()
        ours.settimeout(timeout_s)
        try:
            ready, _, _ = _wire.recv(ours)
        except (OSError, _wire.ChannelClosed) as exc:
            popen.kill()
            popen.wait()
            ours.close()
            shutil.rmtree(root, ignore_errors=True)
            raise SandboxError(f"sandbox {name} did not start: {exc} (see {state_dir / 'sandboxes.log'})") from exc
        ours.settimeout(None)
        if not ready.get("ready"):
            popen.kill()
            raise SandboxError(f"sandbox {name} sent {ready!r} instead of ready")
        return cls(name, root, popen, ours, uid, cgroups)

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None

    def inner_path(self, member: str) -> str:
        return f"{_bwrap.WORKSPACE_MOUNT}/{member}"

    def host_path(self, member: str) -> Path:
        return self.root / member

    async def spawn(self, iid: str, limits: Limits) -> SandboxProcess:
        """Fork a new instance from the zygote, with its own workspace and limits."""
        _reply, fds = await self._zygote.request(
            {"op": "spawn", "iid": iid, "workspace": self.inner_path(iid), "limits": limits.as_agent()})
        proc = await SandboxProcess.from_hello(fds[0], iid)
        self.adopt(proc, limits.processes)
        return proc

    def adopt(self, proc: SandboxProcess, max_pids: int | None) -> None:
        """Put a new process of this sandbox into its own pids cgroup (before it runs any user code)."""
        self.members.add(proc.key)
        if self.cgroups is not None:
            self.cgroups.create(proc.key, max_pids)
            self.cgroups.add(proc.key, proc.pid)

    async def kill(self, proc: SandboxProcess) -> None:
        """Stop one process of this sandbox with everything it started, and delete its workspace."""
        proc.close()
        self.members.discard(proc.key)
        await asyncio.to_thread(self._kill_tree, proc)

    def _kill_tree(self, proc: SandboxProcess) -> None:
        if self.cgroups is not None:
            self.cgroups.kill(proc.key)
        proc.kill_group()
        shutil.rmtree(self.host_path(proc.key), ignore_errors=True)

    async def close(self) -> None:
        """End the sandbox: its pid namespace dies with every process in it; its files are removed."""
        self._zygote.close()
        members, self.members = set(self.members), set()
        await asyncio.to_thread(self._end, members)

    def _end(self, members: set[str]) -> None:
        if self._popen.poll() is None:
            try:
                os.killpg(self._popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._popen.wait()
        if self.cgroups is not None:
            for key in members:
                self.cgroups.kill(key)
        deadline = time.monotonic() + 2
        while self.root.exists() and time.monotonic() < deadline:
            shutil.rmtree(self.root, ignore_errors=True)
