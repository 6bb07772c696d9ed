"""What E2B's API shows that the worldrt contract does not keep: the sandboxes this server made (E2B id,
access token, template, envs, metadata, absolute end time, running or paused) and the snapshots taken as
templates, as E2B's JSON.

An E2B sandbox id is this server's own (``i…``), not the worldrt instance id behind it: a paused sandbox
has no instance, and its resume starts a new one under the same E2B id. Access tokens are compared in
constant time and never logged.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worldrt.errors import NotFound

ENVD_VERSION = "0.6.4"  # the envd features the SDK 2.x gates on (streamed uploads, close stdin)
CLIENT_ID = "worldrt"
CPU_COUNT, MEMORY_MB, DISK_MB = 1, 1024, 256  # worldrt's default Limits


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Sandbox:
    id: str
    instance_id: str  # the worldrt instance behind it; "" while paused
    token: str  # envd's access token (X-Access-Token)
    traffic_token: str  # the code interpreter's (E2B-Traffic-Access-Token: its context calls send no other)
    template: str
    envs: dict[str, str]
    metadata: dict[str, str]
    timeout_s: int
    end_at: float
    auto_pause: bool = False
    started_at: float = field(default_factory=time.time)
    paused_snapshot: str = ""  # the worldrt snapshot a paused sandbox resumes from
    # E2B names processes by pid; worldrt by process id. pid -> process id, for processes of this instance.
    pids: dict[int, str] = field(default_factory=dict)
    stdin_offsets: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state(self) -> str:
        return "paused" if not self.instance_id else "running"

    def authorized(self, access: bytes | None, traffic: bytes | None) -> bool:
        return ((access is not None and hmac.compare_digest(access, self.token.encode()))
                or (traffic is not None and hmac.compare_digest(traffic, self.traffic_token.encode())))

    def to_json(self) -> dict[str, Any]:
        """E2B's ``Sandbox`` (create, connect, fork)."""
        return {"templateID": self.template, "sandboxID": self.id, "clientID": CLIENT_ID, "envdVersion": ENVD_VERSION,
                "envdAccessToken": self.token, "trafficAccessToken": self.traffic_token, "domain": None}

    def detail(self) -> dict[str, Any]:
        """E2B's ``SandboxDetail`` (get_info) and ``ListedSandbox`` (list)."""
        return {"templateID": self.template, "sandboxID": self.id, "clientID": CLIENT_ID,
                "startedAt": iso(self.started_at), "endAt": iso(self.end_at), "envdVersion": ENVD_VERSION,
                "cpuCount": CPU_COUNT, "memoryMB": MEMORY_MB, "diskSizeMB": DISK_MB, "state": self.state,
                "metadata": dict(self.metadata), "allowInternetAccess": False,
                "lifecycle": {"onTimeout": "pause" if self.auto_pause else "kill", "autoResume": False}}


@dataclass
class Snapshot:
    id: str  # the worldrt snapshot id; E2B uses it as a template id
    names: list[str]
    template: str
    envs: dict[str, str]
    sandbox_id: str = ""  # the sandbox it was taken of

    def to_json(self) -> dict[str, Any]:
        return {"snapshotID": self.id, "names": list(self.names)}


class Records:
    """Sandboxes and snapshots by id, safe to use from the server's worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sandboxes: dict[str, Sandbox] = {}
        self.snapshots: dict[str, Snapshot] = {}

    @staticmethod
    def new_id() -> str:
        return f"i{secrets.token_hex(10)}"

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(24)

    def add(self, sandbox: Sandbox) -> Sandbox:
        with self._lock:
            self.sandboxes[sandbox.id] = sandbox
        return sandbox

    def get(self, sandbox_id: str) -> Sandbox:
        with self._lock:
            found = self.sandboxes.get(sandbox_id)
        if found is None:
            raise NotFound(f"sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")
        return found

    def find(self, sandbox_id: str) -> Sandbox | None:
        with self._lock:
            return self.sandboxes.get(sandbox_id)

    def drop(self, sandbox_id: str) -> Sandbox | None:
        with self._lock:
            return self.sandboxes.pop(sandbox_id, None)

    def listed(self) -> list[Sandbox]:
        with self._lock:
            return sorted(self.sandboxes.values(), key=lambda s: (s.started_at, s.id))

    def expired(self, now: float) -> list[Sandbox]:
        with self._lock:
            return [s for s in self.sandboxes.values() if s.end_at <= now]

    def add_snapshot(self, snapshot: Snapshot) -> Snapshot:
        with self._lock:
            self.snapshots[snapshot.id] = snapshot
        return snapshot

    def snapshot(self, name: str) -> Snapshot | None:
        with self._lock:
            for snap in self.snapshots.values():
                if name == snap.id or name in snap.names:
                    return snap
        return None

    def listed_snapshots(self, sandbox_id: str | None) -> list[Snapshot]:
        with self._lock:
            return [s for s in self.snapshots.values() if sandbox_id is None or s.sandbox_id == sandbox_id]

    def drop_snapshot(self, snapshot_id: str) -> Snapshot | None:
        with self._lock:
            return self.snapshots.pop(snapshot_id, None)
