"""Modal's sandboxes on worldrt: each call the host call(s) it stands for, made through the host over the
API's generator link (so it goes to the modal provider and is recorded, with source ``modal-api``), plus
this server's records of them.

A sandbox is an instance of the modal provider. It ends (its result set once, then its instance stopped)
when it is terminated (TERMINATED), when its ``timeout`` passes (TIMEOUT, which the SDK raises as
``SandboxTimeoutError``), when no call touched it for its ``idle_timeout`` (IDLE_TIMEOUT), or when its
entrypoint exits (SUCCESS or FAILURE with the exit code); a sandbox whose entrypoint ended keeps its
instance for ``KEEP_ENDED_S`` so that its output can still be read. The expiry thread checks deadlines
every ``EXPIRY_INTERVAL_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from modal_proto import api_pb2

from worldrt.errors import FailedPrecondition, InvalidArgument, NotFound, Unimplemented, WorldError
from worldrt.host import HostAPI
from worldrt.host.api.modal._images import SUCCESS, Images, ModalImage
from worldrt.host.api.modal._records import Records, SandboxRecord, new_id
from worldrt.v1 import host_pb, pb

log = logging.getLogger("worldrt.api.modal")

SOURCE = "modal-api"
PROVIDER = "modal"
KEEP_ENDED_S = 300.0
EXPIRY_INTERVAL_S = 0.5
# The provider's own idle reaping must never come before the sandbox's timeout: it gets this much more.
_TTL_MARGIN_S = 120
_MAX_TIMEOUT_S = 24 * 3600
_G = api_pb2.GenericResult

NO_NETWORK = "worldrt sandboxes have no network (bubblewrap --unshare-net): nothing can reach a port inside"


def terminated() -> api_pb2.GenericResult:
    return _G(status=_G.GENERIC_STATUS_TERMINATED, exitcode=137)


def refuse_definition(definition: api_pb2.Sandbox) -> None:
    """Unimplemented, with the reason, for what a sandbox definition asks that cannot work here."""
    checks: tuple[tuple[Any, str, str], ...] = (
        (definition.resources.HasField("gpu_config") and definition.resources.gpu_config.count > 0, "GPUs",
         "this machine has no GPU"),
        (definition.nfs_mounts, "network file systems", "worldrt has no NFS"),
        (definition.volume_mounts, "volumes", "worldrt has no Modal volumes; use sb.filesystem or a snapshot"),
        (definition.cloud_bucket_mounts or definition.s3_mounts, "cloud bucket mounts", NO_NETWORK),
        (definition.open_ports.ports, "encrypted_ports / unencrypted_ports (tunnels)", NO_NETWORK),
        (definition.HasField("pty_info"), "a PTY", "worldrt sandboxes have no terminal"),
        (definition.mount_ids, "local files mounted into the sandbox",
         "write them with sb.filesystem.write_* instead"),
        (definition.proxy_id, "a Modal proxy", NO_NETWORK),
    )
    for present, what, why in checks:
        if present:
            raise Unimplemented(f"{what} cannot work in worldrt's Modal-compatible API: {why}")


class EntrypointCalls(Protocol):
    """The process calls a sandbox's entrypoint takes (``_processes.Processes``)."""

    def start_entrypoint(self, record: SandboxRecord, argv: list[str]) -> None: ...
    def entrypoint_result(self, record: SandboxRecord, wait_s: float) -> api_pb2.GenericResult | None: ...
    def running(self, record: SandboxRecord) -> bool: ...


class Sandboxes:
    def __init__(self, host: HostAPI, images: Images, records: Records, *, source: str = SOURCE) -> None:
        self.host, self.images, self.records, self.source = host, images, records, source
        self.processes: EntrypointCalls | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._expiry: threading.Thread | None = None

    # plumbing --------------------------------------------------------------------------------------
    def link(self) -> None:
        """Link this API's generator calls to modal, unless the host already has a link for it."""
        for link in self.host.list_links(host_pb.ListLinksRequest()).links:
            if link.source_component == self.source and "generator" in link.interfaces:
                return
        self.host.put_link(pb.LinkConfig(source_component=self.source, interfaces=["generator"],
                                         target_provider=PROVIDER))

    def call(self, **request: Any) -> host_pb.ProviderCallReply:
        return self.host.call_provider(host_pb.ProviderCallRequest(source=self.source, **request))

    # lifetime of a sandbox -------------------------------------------------------------------------
    def env_of(self, sources: list[api_pb2.SecretSource], secret_ids: list[str]) -> dict[str, str]:
        env: dict[str, str] = {}
        for secret_id in secret_ids:
            env.update(self.records.secret_env(secret_id))
        for source in sources:
            if source.secret_id:
                env.update(self.records.secret_env(source.secret_id))
            env.update(dict(source.env.contents) if source.HasField("env") else {})
        return env

    def create(self, request: api_pb2.SandboxCreateV2Request) -> SandboxRecord:
        definition = request.definition
        refuse_definition(definition)
        image = self.images.get(definition.image_id)
        if image.status != SUCCESS:
            raise FailedPrecondition(f"Image {image.id} is not built: {image.exception or 'its build has not ended'}")
        timeout_s = definition.timeout_secs or 300
        if not 1 <= timeout_s <= _MAX_TIMEOUT_S:
            raise InvalidArgument(f"timeout must be between 1 and {_MAX_TIMEOUT_S} seconds, got {timeout_s}")
        if definition.workdir and not definition.workdir.startswith("/"):
            raise InvalidArgument(f"workdir must be an absolute path, got {definition.workdir!r}")
        env = self.env_of(list(request.secret_sources), list(definition.secret_ids))
        if definition.HasField("environment_variables"):
            env.update(dict(definition.environment_variables.contents))
        limits = pb.Limits(memory_mb=definition.resources.memory_mb) if definition.resources.memory_mb else None
        sandbox_id = new_id("sb")
        instance = self.call(start=pb.StartRequest(
            language="shell", ttl_s=timeout_s + _TTL_MARGIN_S, limits=limits,
            metadata={"modal_sandbox": sandbox_id, "modal_app": request.app_id}, **image.start())).instance
        record = SandboxRecord(sandbox_id, new_id("ta") + "V", instance.instance_id, request.app_id, image.id,
                               definition.name, timeout_s, definition.idle_timeout_secs, env, definition.workdir,
                               tags={t.tag_name: t.tag_value for t in request.tags})
        try:
            self.records.add(record)
            if definition.entrypoint_args:
                self.start_entrypoint(record, list(definition.entrypoint_args))
        except BaseException:
            self.records.forget(record)
            self.stop_instance(record)
            raise
        return record

    def start_entrypoint(self, record: SandboxRecord, argv: list[str]) -> None:
        if self.processes is None:
            raise Unimplemented("a sandbox entrypoint needs the host's process calls")
        self.processes.start_entrypoint(record, argv)

    def entrypoint_result(self, record: SandboxRecord, wait_s: float) -> api_pb2.GenericResult | None:
        """Its entrypoint's result once it ended (waiting up to ``wait_s``); None while it runs."""
        return None if self.processes is None else self.processes.entrypoint_result(record, wait_s)

    def end(self, record: SandboxRecord, result: api_pb2.GenericResult, *, stop_now: bool = True) -> None:
        """Set its result (once) and, unless its output is kept a while, stop its instance."""
        if record.finish(result) and stop_now:
            self.stop_instance(record)

    def terminate(self, sandbox_id: str) -> None:
        record = self.records.get(sandbox_id)
        if record.result is None:
            record.finish(terminated())
        self.stop_instance(record)

    def wait(self, sandbox_id: str, timeout_s: float) -> api_pb2.GenericResult | None:
        """Its result, waiting up to ``timeout_s`` for it; None when it still runs then."""
        record = self.records.get(sandbox_id)
        if record.result is None and record.entrypoint is not None:
            ended = self.entrypoint_result(record, timeout_s)
            if ended is not None:
                self.end(record, ended, stop_now=False)
        elif record.result is None and timeout_s > 0:
            record.ended.wait(timeout_s)
        return record.result

    def live(self, task_id: str, subject: str | None = None) -> SandboxRecord:
        """The running sandbox of ``task_id`` (the one the caller's router token opens, when given)."""
        if subject is not None and subject != task_id:
            raise InvalidArgument(f"this router token opens task {subject}, not {task_id}")
        record = self.records.by_task(task_id)
        if record.result is not None:
            raise NotFound(f"Sandbox {record.id} has finished ({_G.GenericStatus.Name(record.result.status)}): "
                           f"its task {task_id} takes no more calls")
        record.touch()
        return record

    def snapshot(self, record: SandboxRecord, ttl_s: int) -> ModalImage:
        ref = self.call(snapshot=pb.SnapshotRequest(instance_id=record.instance_id, ttl_s=max(0, ttl_s))).snapshot
        return self.images.snapshot_image(ref.snapshot_id)

    # expiry ----------------------------------------------------------------------------------------
    def expire(self, now: float | None = None) -> int:
        """End what a deadline has passed for; how many."""
        now = time.monotonic() if now is None else now
        ended = 0
        for record in self.records.all():
            if record.result is None and now >= record.deadline:
                log.info("sandbox %s reached its timeout of %d s", record.id, record.timeout_s)
                self.end(record, _G(status=_G.GENERIC_STATUS_TIMEOUT, exitcode=124))
                ended += 1
            elif (record.result is None and record.idle_timeout_s
                  and now - record.last_active >= record.idle_timeout_s and not self.busy(record)):
                log.info("sandbox %s was idle for its idle_timeout of %d s", record.id, record.idle_timeout_s)
                self.end(record, _G(status=_G.GENERIC_STATUS_IDLE_TIMEOUT))
                ended += 1
            elif record.result is not None and not record.stopped and time.time() - record.finished_at > KEEP_ENDED_S:
                self.stop_instance(record)
        return ended

    def busy(self, record: SandboxRecord) -> bool:
        """Whether a process of its own runs in it now (an idle timeout waits for them)."""
        try:
            return self.processes is not None and self.processes.running(record)
        except WorldError:
            return False

    def start_expiry(self, interval_s: float = EXPIRY_INTERVAL_S) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.expire()
                except Exception:
                    log.exception("sandbox expiry failed")

        self._expiry = threading.Thread(target=loop, name="modal-api-expiry", daemon=True)
        self._expiry.start()

    def stop_instance(self, record: SandboxRecord) -> None:
        """Stop its instance, once."""
        with self._lock:
            if record.stopped:
                return
            record.stopped = True
        self._quietly_stop(record.instance_id)

    def _quietly_stop(self, instance_id: str) -> None:
        try:
            self.call(stop=pb.InstanceRef(instance_id=instance_id))
        except NotFound:
            pass  # gone already
        except WorldError as exc:
            if "is stopped" not in exc.message:
                log.warning("could not stop %s: %s", instance_id, exc.message)

    def close(self) -> int:
        """Stop every sandbox this server started; how many were running."""
        self._stop.set()
        if self._expiry is not None:
            self._expiry.join(5)
        running = 0
        for record in self.records.all():
            if record.result is None:
                running += 1
                record.finish(terminated())
            self.stop_instance(record)
        return running
