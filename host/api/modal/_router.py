"""``modal.task_command_router.TaskCommandRouter``, served on the same port as the control plane (the SDK
is given this server's own address as the router's URL): readiness and filesystem snapshots here, and the
execs and stdio of ``_execs``.

Every call carries a bearer JWT this server signed for one sandbox task (checked by the gate before the
request is read); a call about another task is refused here.
"""

from __future__ import annotations

from typing import Any

from modal_proto import task_command_router_pb2 as tcr
from modal_proto import task_command_router_pb2_grpc

from worldrt.errors import Unimplemented
from worldrt.host.api.modal._calls import Context, ModalApi, bearer_subject, refuse_the_rest, unary
from worldrt.host.api.modal._execs import ExecCalls
from worldrt.host.api.modal._processes import Processes
from worldrt.host.api.modal._records import SandboxRecord

_Base: Any = task_command_router_pb2_grpc.TaskCommandRouterServicer
_DISK_ONLY = ("worldrt's modal provider snapshots a sandbox's files only (its workspace and /tmp), not its "
              "memory: use sb.snapshot_filesystem() and Sandbox.create(image=...)")


class Router(ExecCalls, _Base):
    def __init__(self, api: ModalApi, processes: Processes) -> None:
        self.api, self.processes = api, processes
        ExecCalls.__init__(self, api)
        refuse_the_rest(self, _Base)

    def live(self, task_id: str, context: Context) -> SandboxRecord:
        return self.api.sandboxes.live(task_id, bearer_subject(self.api, context))

    @unary
    async def SandboxWaitUntilReady(self, request: tcr.SandboxWaitUntilReadyTcrRequest,
                                    context: Context) -> tcr.SandboxWaitUntilReadyTcrResponse:
        record = self.live(request.task_id, context)
        return tcr.SandboxWaitUntilReadyTcrResponse(ready_at=record.created)

    @unary
    async def TaskSnapshotFilesystem(self, request: tcr.TaskSnapshotFilesystemRequest,
                                     context: Context) -> tcr.TaskSnapshotFilesystemResponse:
        record = self.live(request.task_id, context)
        image = await self.api.host(record.instance_id, self.api.sandboxes.snapshot, record, request.ttl_seconds)
        return tcr.TaskSnapshotFilesystemResponse(image_id=image.id)

    @unary
    async def TaskSnapshotMemory(self, request: tcr.TaskSnapshotMemoryRequest,
                                 context: Context) -> tcr.TaskSnapshotMemoryResponse:
        raise Unimplemented(f"memory snapshots (_experimental_snapshot) are not supported here: {_DISK_ONLY}")

    @unary
    async def TaskSnapshotDirectory(self, request: tcr.TaskSnapshotDirectoryRequest,
                                    context: Context) -> tcr.TaskSnapshotDirectoryResponse:
        raise Unimplemented(f"snapshot_directory is not supported here: {_DISK_ONLY}")

