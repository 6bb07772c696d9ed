"""What Morph's API shows that the worldrt contract does not keep: the facade's own records of the
instances and snapshots it made (ids, spec, metadata, absolute TTLs), as Morph's JSON.

An instance's id is its worldrt instance id; a snapshot taken of an instance has its worldrt snapshot
id; a snapshot made from an image is *virtual* (``snapshot_…``): nothing runs behind it until an
instance starts from it, and it never expires on its own.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from worldrt.errors import NotFound


def now_s() -> int:
    return int(time.time())


@dataclass
class Spec:
    vcpus: int = 1
    memory: int = 1024  # MB: worldrt's default Limits.memory_mb
    disk_size: int = 256  # MB: worldrt's default Limits.disk_mb

    def to_json(self) -> dict[str, int]:
        return {"vcpus": self.vcpus, "memory": self.memory, "disk_size": self.disk_size}


@dataclass
class Ttl:
    seconds: int | None = None
    expire_at: int | None = None
    action: str = "stop"

    @classmethod
    def of(cls, seconds: int | None, action: str | None = None) -> Ttl:
        return cls(seconds, None if seconds is None else now_s() + seconds, action or "stop")


@dataclass
class SnapshotRecord:
    id: str
    image_id: str
    spec: Spec
    virtual: bool
    metadata: dict[str, str] = field(default_factory=dict)
    digest: str | None = None
    ttl: Ttl = field(default_factory=Ttl)
    created: int = field(default_factory=now_s)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "snapshot", "created": self.created, "status": "ready",
                "spec": self.spec.to_json(), "refs": {"image_id": self.image_id}, "digest": self.digest,
                "metadata": dict(self.metadata),
                "ttl": {"ttl_seconds": self.ttl.seconds, "ttl_expire_at": self.ttl.expire_at}}


@dataclass
class InstanceRecord:
    id: str
    snapshot_id: str
    image_id: str
    spec: Spec
    metadata: dict[str, str] = field(default_factory=dict)
    ttl: Ttl = field(default_factory=Ttl)
    wake_on: dict[str, bool] = field(default_factory=lambda: {"wake_on_ssh": False, "wake_on_http": False})
    created: int = field(default_factory=now_s)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "instance", "created": self.created, "status": "ready",
                "spec": self.spec.to_json(), "refs": {"snapshot_id": self.snapshot_id, "image_id": self.image_id},
                "networking": {"internal_ip": None, "http_services": []},
                "ttl": {"ttl_seconds": self.ttl.seconds, "ttl_expire_at": self.ttl.expire_at,
                        "ttl_action": self.ttl.action},
                "wake_on": dict(self.wake_on), "metadata": dict(self.metadata)}


def matches(metadata: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(metadata.get(k) == v for k, v in wanted.items())


class Records:
    """Instances and snapshots by id, safe to use from the server's worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.instances: dict[str, InstanceRecord] = {}
        self.snapshots: dict[str, SnapshotRecord] = {}

    @staticmethod
    def virtual_id() -> str:
        return f"snapshot_{secrets.token_hex(8)}"

    def add_instance(self, record: InstanceRecord) -> InstanceRecord:
        with self._lock:
            self.instances[record.id] = record
        return record

    def add_snapshot(self, record: SnapshotRecord) -> SnapshotRecord:
        with self._lock:
            self.snapshots[record.id] = record
        return record

    def instance(self, instance_id: str) -> InstanceRecord:
        with self._lock:
            record = self.instances.get(instance_id)
        if record is None:
            raise NotFound(f"Instance {instance_id} not found")
        return record

    def snapshot(self, snapshot_id: str) -> SnapshotRecord:
        with self._lock:
            record = self.snapshots.get(snapshot_id)
        if record is None:
            raise NotFound(f"Snapshot {snapshot_id} not found")
        return record

    def drop_instance(self, instance_id: str) -> InstanceRecord | None:
        with self._lock:
            return self.instances.pop(instance_id, None)

    def drop_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        with self._lock:
            return self.snapshots.pop(snapshot_id, None)

    def list_instances(self, metadata: dict[str, str]) -> list[InstanceRecord]:
        with self._lock:
            found = list(self.instances.values())
        return sorted((r for r in found if matches(r.metadata, metadata)), key=lambda r: (r.created, r.id))

    def list_snapshots(self, metadata: dict[str, str], digest: str | None = None) -> list[SnapshotRecord]:
        with self._lock:
            found = list(self.snapshots.values())
        return sorted((r for r in found if matches(r.metadata, metadata) and (digest is None or r.digest == digest)),
                      key=lambda r: (r.created, r.id))

    def by_digest(self, digest: str) -> SnapshotRecord | None:
        found = self.list_snapshots({}, digest)
        return found[0] if found else None

    def expired(self, now: int) -> tuple[list[str], list[str]]:
        """Ids of the instances and snapshots whose absolute TTL has passed."""
        with self._lock:
            return ([r.id for r in self.instances.values() if r.ttl.expire_at is not None and r.ttl.expire_at <= now],
                    [r.id for r in self.snapshots.values() if r.ttl.expire_at is not None and r.ttl.expire_at <= now])
