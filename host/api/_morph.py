"""Morph Cloud's operations on worldrt: each one the generator call(s) it stands for, made through the
host (so it goes over the API's generator link to a provider and is recorded), plus the facade's records.

worldrt keeps no list, metadata or absolute TTL of instances, so ``Records`` does; an id worldrt no
longer knows (reaped, or stopped elsewhere) is dropped from the records when a call says NOT_FOUND.
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable
from typing import Any

from worldrt.errors import FailedPrecondition, InvalidArgument, NotFound, Reason, Unavailable, WorldError
from worldrt.host import HostAPI
from worldrt.host.api._images import Images
from worldrt.host.api._state import InstanceRecord, Records, SnapshotRecord, Spec, Ttl, now_s
from worldrt.v1 import host_pb, pb

log = logging.getLogger("worldrt.api.morph")

SOURCE = "morph-api"
DEFAULT_EXEC_TIMEOUT_MS = 300_000
MAX_BRANCHES = 256
# worldrt's own idle TTL (the provider default when ttl_s is 0); Morph's absolute TTL is the facade's.
_IDLE_TTL_S = 3600
_MIN_MEMORY_MB, _MAX_MEMORY_MB = 64, 65536


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise InvalidArgument(f"{name} must be at least 1, got {value}")


def _gone(error: WorldError) -> bool:
    """Whether worldrt's answer says the instance no longer runs: unknown (reaped), or stopped (by Stop, a
    merge, its interpreter dying), as the provider's reason says. Morph has no stopped state: such an
    instance is simply not found."""
    return isinstance(error, NotFound) or error.reason in (Reason.INSTANCE_GONE, Reason.INSTANCE_NOT_FOUND)


def _code(command: list[str]) -> str:
    """``["echo hi"]`` is a shell line; ``["ls", "-l", "/"]`` is an argv, quoted for the shell."""
    if not command:
        raise InvalidArgument("command must name at least one word")
    if any("\0" in word for word in command):
        raise InvalidArgument("command must not contain NUL characters: no command line can carry them")
    return command[0] if len(command) == 1 else shlex.join(command)


class MorphApi:
    def __init__(self, host: HostAPI, *, source: str = SOURCE, exec_timeout_ms: int = DEFAULT_EXEC_TIMEOUT_MS,
                 max_branches: int = MAX_BRANCHES, images: Images | None = None) -> None:
        self.host = host
        self.source = source
        self.exec_timeout_ms = exec_timeout_ms
        self.max_branches = max_branches
        self.images = images or Images(host)
        self.records = Records()
        self._stop = threading.Event()
        self._expiry: threading.Thread | None = None

    # plumbing --------------------------------------------------------------------------------------
    def link(self) -> None:
        """Link this API's generator calls to morph, unless the host already has a link for it."""
        for link in self.host.list_links(host_pb.ListLinksRequest()).links:
            if link.source_component == self.source and "generator" in link.interfaces:
                return
        self.host.put_link(pb.LinkConfig(source_component=self.source, interfaces=["generator"],
                                         target_provider="morph"))

    def _call(self, **request: Any) -> host_pb.ProviderCallReply:
        return self.host.call_provider(host_pb.ProviderCallRequest(source=self.source, **request))

    def _on_instance(self, instance_id: str, **request: Any) -> host_pb.ProviderCallReply:
        """A call about a live instance: when worldrt says it is gone, it disappears here too (404)."""
        self.records.instance(instance_id)
        try:
            return self._call(**request)
        except (NotFound, FailedPrecondition) as exc:
            if not _gone(exc):
                raise
            self.records.drop_instance(instance_id)
            raise NotFound(f"Instance {instance_id} not found: {exc.message}") from None

    # images and snapshots ----------------------------------------------------------------------------
    def list_images(self) -> list[dict[str, Any]]:
        return [image.to_json() for image in self.images.listed()]

    def create_snapshot(self, image_id: str | None, vcpus: int | None, memory: int | None, disk_size: int | None,
                        digest: str | None, metadata: dict[str, str] | None, ttl_seconds: int | None) -> dict[str, Any]:
        """A virtual snapshot of an image: nothing runs until an instance starts from it."""
        if digest is not None and (known := self.records.by_digest(digest)) is not None:
            return known.to_json()
        image = self.images.get(image_id or self.images.listed()[0].id)
        spec = self._spec(Spec(), vcpus, memory, disk_size)
        _positive("ttl_seconds", ttl_seconds)
        return self.records.add_snapshot(SnapshotRecord(
            Records.virtual_id(), image.id, spec, virtual=True, metadata=dict(metadata or {}), digest=digest,
            ttl=Ttl.of(ttl_seconds))).to_json()

    @staticmethod
    def _spec(base: Spec, vcpus: int | None, memory: int | None, disk_size: int | None) -> Spec:
        for name, value in (("vcpus", vcpus), ("disk_size", disk_size)):
            _positive(name, value)
        if memory is not None and not _MIN_MEMORY_MB <= memory <= _MAX_MEMORY_MB:
            raise InvalidArgument(f"memory must be between {_MIN_MEMORY_MB} and {_MAX_MEMORY_MB} MB, got {memory}")
        return Spec(vcpus or base.vcpus, memory or base.memory, disk_size or base.disk_size)

    def get_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        return self.records.snapshot(snapshot_id).to_json()

    def list_snapshots(self, metadata: dict[str, str], digest: str | None) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.records.list_snapshots(metadata, digest)]

    def delete_snapshot(self, snapshot_id: str) -> None:
        record = self.records.snapshot(snapshot_id)
        self.records.drop_snapshot(snapshot_id)
        if not record.virtual:
            try:
                self._call(stop=pb.InstanceRef(instance_id=snapshot_id))
            except NotFound:
                pass  # reaped by worldrt already: gone either way

    def set_snapshot_metadata(self, snapshot_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        record = self.records.snapshot(snapshot_id)
        record.metadata = dict(metadata)
        return record.to_json()

    def set_snapshot_ttl(self, snapshot_id: str, ttl_seconds: int | None) -> dict[str, Any]:
        _positive("ttl_seconds", ttl_seconds)
        record = self.records.snapshot(snapshot_id)
        record.ttl = Ttl.of(ttl_seconds)
        return record.to_json()

    # instances ---------------------------------------------------------------------------------------
    def start(self, snapshot_id: str, metadata: dict[str, str] | None, ttl_seconds: int | None,
              ttl_action: str | None, vcpus: int | None = None, memory: int | None = None,
              disk_size: int | None = None) -> dict[str, Any]:
        _positive("ttl_seconds", ttl_seconds)
        if ttl_action == "pause":
            raise InvalidArgument("ttl_action 'pause' is not supported here (worldrt cannot pause an instance); "
                                  "use 'stop'")
        snap = self.records.snapshot(snapshot_id)
        spec = self._spec(snap.spec, vcpus, memory, disk_size)
        ttl_s = ttl_seconds if ttl_seconds is not None and ttl_seconds > _IDLE_TTL_S else 0
        if snap.virtual:
            request = pb.StartRequest(image=self.images.start_image(snap.image_id), language="shell", ttl_s=ttl_s,
                                      limits=pb.Limits(memory_mb=spec.memory, disk_mb=spec.disk_size),
                                      metadata=metadata or {})
        else:
            request = pb.StartRequest(snapshot_id=snapshot_id, ttl_s=ttl_s, metadata=metadata or {})
        try:
            instance = self._call(start=request).instance
        except NotFound as exc:
            if not snap.virtual:
                self.records.drop_snapshot(snapshot_id)
            raise NotFound(f"Snapshot {snapshot_id} not found: {exc.message}") from None
        return self.records.add_instance(InstanceRecord(
            instance.instance_id, snapshot_id, snap.image_id, spec, dict(metadata or {}),
            Ttl.of(ttl_seconds, ttl_action))).to_json()

    def get_instance(self, instance_id: str) -> dict[str, Any]:
        return self.records.instance(instance_id).to_json()

    def list_instances(self, metadata: dict[str, str]) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.records.list_instances(metadata)]

    def stop(self, instance_id: str) -> None:
        self.records.instance(instance_id)
        self.records.drop_instance(instance_id)
        try:
            self._call(stop=pb.InstanceRef(instance_id=instance_id))
        except (NotFound, FailedPrecondition) as exc:
            if not _gone(exc):
                raise

    def _execute(self, instance_id: str, command: list[str]) -> pb.ExecuteRequest:
        return pb.ExecuteRequest(instance_id=instance_id, language="shell", code=_code(command),
                                 timeout_ms=self.exec_timeout_ms)

    def execute(self, instance_id: str, command: list[str]) -> dict[str, Any]:
        result = self._on_instance(instance_id, execute=self._execute(instance_id, command)).execution
        return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}

    def execute_stream(self, instance_id: str, command: list[str],
                       on_event: Callable[[pb.ExecutionEvent], None]) -> pb.ExecutionResult:
        """Run ``command``, handing each output event to ``on_event`` as it comes; its result. It blocks
        until the run ends: the caller runs it on a thread of its own."""
        request = host_pb.ProviderCallRequest(source=self.source, execute=self._execute(instance_id, command))
        self.records.instance(instance_id)
        try:
            result = self.host.call_provider_stream(request, lambda event: on_event(event.execution))
        except NotFound as exc:
            self.records.drop_instance(instance_id)
            raise NotFound(f"Instance {instance_id} not found: {exc.message}") from None
        assert isinstance(result, pb.ExecutionResult)  # an execute's stream ends in its result
        return result

    @staticmethod
    def stream_events(item: pb.ExecutionEvent | pb.ExecutionResult | BaseException) -> tuple[list[dict[str, str]], bool]:
        """Morph's SSE events (``{"type": "stdout"|"stderr"|"exit_code", "content": …}``) for one item of a
        run, and whether it was the last: a failure after the run has started ends the stream with a stderr
        line and exit code -1 (a failure before it answers with an HTTP status instead)."""
        if isinstance(item, pb.ExecutionResult):
            return [{"type": "exit_code", "content": str(item.exit_code)}], True
        if isinstance(item, BaseException):
            message = item.message if isinstance(item, WorldError) else repr(item)
            return [{"type": "stderr", "content": f"worldrt: the command's stream failed: {message}\n"},
                    {"type": "exit_code", "content": "-1"}], True
        kind = item.WhichOneof("event")
        if kind in ("stdout", "stderr"):
            return [{"type": kind, "content": getattr(item, kind)}], False
        return [], False

    def snapshot(self, instance_id: str, digest: str | None, metadata: dict[str, str] | None,
                 ttl_seconds: int | None) -> dict[str, Any]:
        _positive("ttl_seconds", ttl_seconds)
        if digest is not None and (known := self.records.by_digest(digest)) is not None:
            return known.to_json()
        return self._snapshot(self.records.instance(instance_id), digest, metadata or {}, ttl_seconds).to_json()

    def _snapshot(self, parent: InstanceRecord, digest: str | None, metadata: dict[str, str],
                  ttl_seconds: int | None) -> SnapshotRecord:
        ttl_s = ttl_seconds if ttl_seconds is not None and ttl_seconds > _IDLE_TTL_S else 0
        ref = self._on_instance(parent.id, snapshot=pb.SnapshotRequest(instance_id=parent.id, ttl_s=ttl_s)).snapshot
        return self.records.add_snapshot(SnapshotRecord(ref.snapshot_id, parent.image_id, parent.spec, virtual=False,
                                                        metadata=metadata, digest=digest, ttl=Ttl.of(ttl_seconds)))

    def branch(self, instance_id: str, count: int) -> dict[str, Any]:
        """Snapshot the instance and start ``count`` instances of that snapshot; all or none."""
        if not 1 <= count <= self.max_branches:
            raise InvalidArgument(f"count must be between 1 and {self.max_branches}, got {count}")
        parent = self.records.instance(instance_id)
        snap = self._snapshot(parent, None, {}, None)
        try:
            reply = self._call(branch=pb.BranchRequest(snapshot_id=snap.id, count=count)).branch
        except WorldError as exc:
            self.records.drop_snapshot(snap.id)
            if isinstance(exc, NotFound):
                raise NotFound(f"Snapshot {snap.id} of instance {instance_id} is gone: {exc.message}") from None
            self._quietly_stop(snap.id)
            raise
        if reply.errors:
            for made in reply.instances:
                self._quietly_stop(made.instance_id)
            problems = "; ".join(f"branch {e.index}: {e.message}" for e in reply.errors)
            raise Unavailable(f"{len(reply.errors)} of {count} branches did not start ({problems}); none were kept")
        children = [self.records.add_instance(InstanceRecord(
            made.instance_id, snap.id, parent.image_id, parent.spec, dict(parent.metadata))) for made in reply.instances]
        return {"snapshot": snap.to_json(), "instances": [c.to_json() for c in children]}

    def set_metadata(self, instance_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        record = self.records.instance(instance_id)
        record.metadata = dict(metadata)
        return record.to_json()

    def set_ttl(self, instance_id: str, ttl_seconds: int | None, ttl_action: str | None) -> dict[str, Any]:
        _positive("ttl_seconds", ttl_seconds)
        if ttl_action == "pause":
            raise InvalidArgument("ttl_action 'pause' is not supported here (worldrt cannot pause an instance); "
                                  "use 'stop'")
        record = self.records.instance(instance_id)
        record.ttl = Ttl.of(ttl_seconds, ttl_action)
        return record.to_json()

    def set_wake_on(self, instance_id: str, wake_on: dict[str, bool]) -> dict[str, Any]:
        record = self.records.instance(instance_id)
        record.wake_on.update(wake_on)
        return record.to_json()

    # lifetime ----------------------------------------------------------------------------------------
    def _quietly_stop(self, member_id: str) -> None:
        try:
            self._call(stop=pb.InstanceRef(instance_id=member_id))
        except WorldError as exc:
            log.warning("could not stop %s: %s", member_id, exc.message)

    def expire(self, now: int | None = None) -> int:
        """Stop what an absolute TTL has run out for; how many were stopped."""
        instances, snapshots = self.records.expired(now_s() if now is None else now)
        for iid in instances:
            if self.records.drop_instance(iid) is not None:
                log.info("instance %s reached its ttl", iid)
                self._quietly_stop(iid)
        for sid in snapshots:
            record = self.records.drop_snapshot(sid)
            if record is not None and not record.virtual:
                self._quietly_stop(sid)
        return len(instances) + len(snapshots)

    def start_expiry(self, interval_s: float = 1.0) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.expire()
                except Exception:
                    log.exception("ttl expiry failed")

        self._expiry = threading.Thread(target=loop, name="morph-api-ttl", daemon=True)
        self._expiry.start()

    def close(self) -> int:
        """Stop every instance and release every snapshot this API made; how many."""
        self._stop.set()
        if self._expiry is not None:
            self._expiry.join(5)
        stopped = 0
        for iid in list(self.records.instances):
            self.records.drop_instance(iid)
            self._quietly_stop(iid)
            stopped += 1
        for sid in list(self.records.snapshots):
            record = self.records.drop_snapshot(sid)
            if record is not None and not record.virtual:
                self._quietly_stop(sid)
                stopped += 1
        return stopped
