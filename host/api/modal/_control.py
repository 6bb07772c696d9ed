"""``modal.client.ModalClient``, the control plane, as the modal SDK calls it for Sandboxes: apps by name,
the environment's image builder version, images, secrets, and the V2 sandbox calls. Every RPC the wheel
declares and this class does not implement answers UNIMPLEMENTED with the reason (``_refusals``).

Calls that wait on the host are admitted (``ModalApi.host``) per sandbox; the rest only read or change
this server's own records, on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2
from modal_proto import api_pb2, api_pb2_grpc

from worldrt.errors import InvalidArgument, NotFound, Unimplemented
from worldrt.host.api.modal._auth import CLIENT_AUDIENCE, ROUTER_AUDIENCE
from worldrt.host.api.modal._calls import Context, ModalApi, client_version, refuse_the_rest, streaming, unary
from worldrt.host.api.modal._images import builder_version, metadata
from worldrt.host.api.modal._records import SandboxRecord
from worldrt.host.api.modal._sandboxes import refuse_definition

# The servicer base of the wheel (its stubs type every method as synchronous; these are coroutines).
_Base: Any = api_pb2_grpc.ModalClientServicer
_CREATE = (api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING, api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS,
           api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS, api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL,
           api_pb2.OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP)
_LIST_PAGE = 100
# The longest SandboxWaitV2 long poll served; the SDK asks for 10 s.
_MAX_WAIT_S = 50.0
_JOIN_POLL_S = 0.2


def _handle_metadata(record: SandboxRecord) -> api_pb2.SandboxHandleMetadata:
    return api_pb2.SandboxHandleMetadata(result=record.result, app_id=record.app_id)


def _tags(record: SandboxRecord) -> list[api_pb2.SandboxTag]:
    return [api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in sorted(record.tags.items())]


class ControlPlane(_Base):
    def __init__(self, api: ModalApi) -> None:
        self.api = api
        refuse_the_rest(self, _Base)

    # the client, apps, environment, secrets --------------------------------------------------------
    @unary
    async def ClientHello(self, request: empty_pb2.Empty, context: Context) -> api_pb2.ClientHelloResponse:
        return api_pb2.ClientHelloResponse()

    @unary
    async def AuthTokenGet(self, request: api_pb2.AuthTokenGetRequest, context: Context) -> api_pb2.AuthTokenGetResponse:
        return api_pb2.AuthTokenGetResponse(token=self.api.tokens.sign(CLIENT_AUDIENCE, "client"))

    @unary
    async def AppGetOrCreate(self, request: api_pb2.AppGetOrCreateRequest,
                             context: Context) -> api_pb2.AppGetOrCreateResponse:
        if not request.app_name:
            raise InvalidArgument("an App needs a name")
        app_id = self.api.records.app(request.app_name, request.object_creation_type in _CREATE)
        return api_pb2.AppGetOrCreateResponse(app_id=app_id)

    @unary
    async def EnvironmentGetOrCreate(self, request: api_pb2.EnvironmentGetOrCreateRequest,
                                     context: Context) -> api_pb2.EnvironmentGetOrCreateResponse:
        settings = api_pb2.EnvironmentSettings(image_builder_version=builder_version(client_version(context)))
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id="en-worldrt", metadata=api_pb2.EnvironmentMetadata(name="main", settings=settings))

    # blobs (payloads of 4 MiB or more) ---------------------------------------------------------------
    @unary
    async def BlobCreate(self, request: api_pb2.BlobCreateRequest, context: Context) -> api_pb2.BlobCreateResponse:
        blob_id, url = self.api.blobs.create(request.content_length, request.content_md5)
        return api_pb2.BlobCreateResponse(blob_id=blob_id, upload_url=url, blob_ids=[blob_id],
                                          upload_urls=api_pb2.UploadUrlList(items=[url]))

    @unary
    async def BlobGet(self, request: api_pb2.BlobGetRequest, context: Context) -> api_pb2.BlobGetResponse:
        return api_pb2.BlobGetResponse(download_url=self.api.blobs.download_url(request.blob_id))

    @unary
    async def SecretGetOrCreate(self, request: api_pb2.SecretGetOrCreateRequest,
                                context: Context) -> api_pb2.SecretGetOrCreateResponse:
        kind = request.object_creation_type
        if kind in _CREATE and request.deployment_name:
            overwrite = kind == api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS
            try:
                secret_id = self.api.records.secret(request.deployment_name)
                if kind == api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                    return api_pb2.SecretGetOrCreateResponse(secret_id=secret_id)
            except NotFound:
                pass
            secret_id = self.api.records.put_secret(request.deployment_name, dict(request.env_dict), overwrite)
        elif kind in _CREATE:
            secret_id = self.api.records.put_secret(f"anonymous-{time.monotonic_ns()}", dict(request.env_dict), False)
        else:
            secret_id = self.api.records.secret(request.deployment_name)
        return api_pb2.SecretGetOrCreateResponse(secret_id=secret_id)

    # images ----------------------------------------------------------------------------------------
    @unary
    async def ImageGetOrCreate(self, request: api_pb2.ImageGetOrCreateRequest,
                               context: Context) -> api_pb2.ImageGetOrCreateResponse:
        image = self.api.images.get_or_create(request)
        answer = api_pb2.ImageGetOrCreateResponse(image_id=image.id)
        if image.status:
            answer.result.CopyFrom(image.result())
            answer.metadata.CopyFrom(metadata(request.builder_version))
        return answer

    @streaming
    async def ImageJoinStreaming(self, request: api_pb2.ImageJoinStreamingRequest,
                                 context: Context) -> AsyncIterator[api_pb2.ImageJoinStreamingResponse]:
        image = self.api.images.get(request.image_id)
        sent = int(request.last_entry_id) if request.last_entry_id.isdigit() else 0
        deadline = time.monotonic() + min(max(request.timeout, 1.0), 55.0)
        while True:
            done = bool(image.status)  # read before the logs: every line of a finished build is then in them
            while sent < len(image.logs):
                line = image.logs[sent]
                sent += 1
                yield api_pb2.ImageJoinStreamingResponse(
                    entry_id=str(sent), task_logs=[api_pb2.TaskLogs(data=line, file_descriptor=api_pb2.FILE_DESCRIPTOR_INFO)])
            if done:
                yield api_pb2.ImageJoinStreamingResponse(result=image.result(), eof=True, entry_id=str(sent),
                                                         metadata=metadata(""))
                return
            if time.monotonic() >= deadline:
                return  # the SDK joins again from the last entry it saw
            await asyncio.sleep(_JOIN_POLL_S)

    @unary
    async def ImageFromId(self, request: api_pb2.ImageFromIdRequest, context: Context) -> api_pb2.ImageFromIdResponse:
        image = self.api.images.get(request.image_id)
        return api_pb2.ImageFromIdResponse(image_id=image.id, metadata=metadata(""))

    # sandboxes -------------------------------------------------------------------------------------
    def _access(self, record: SandboxRecord) -> api_pb2.CommandRouterAccess:
        return api_pb2.CommandRouterAccess(url=self.api.router_url,
                                           jwt=self.api.tokens.sign(ROUTER_AUDIENCE, record.task_id))

    @unary
    async def SandboxCreateV2(self, request: api_pb2.SandboxCreateV2Request,
                              context: Context) -> api_pb2.SandboxCreateV2Response:
        record = await self.api.host(None, self.api.sandboxes.create, request)
        return api_pb2.SandboxCreateV2Response(sandbox_id=record.id, task_id=record.task_id,
                                               command_router_access=self._access(record),
                                               metadata=_handle_metadata(record))

    @unary
    async def SandboxCreate(self, request: api_pb2.SandboxCreateRequest,
                            context: Context) -> api_pb2.SandboxCreateResponse:
        refuse_definition(request.definition)
        raise Unimplemented("V1 sandboxes (which the SDK makes for GPUs, network file systems, PTYs or with "
                            "MODAL_SANDBOX_V2=0) are not served here: use the default V2 sandboxes")

    @unary
    async def SandboxGetTaskIdV2(self, request: api_pb2.SandboxGetTaskIdRequest,
                                 context: Context) -> api_pb2.SandboxGetTaskIdResponse:
        record = self.api.records.get(request.sandbox_id)
        if record.result is not None:
            return api_pb2.SandboxGetTaskIdResponse(task_result=record.result)
        return api_pb2.SandboxGetTaskIdResponse(task_id=record.task_id)

    @unary
    async def SandboxGetCommandRouterAccess(self, request: api_pb2.SandboxGetCommandRouterAccessRequest,
                                            context: Context) -> api_pb2.SandboxGetCommandRouterAccessResponse:
        if request.sandbox_id:
            record = self.api.records.get(request.sandbox_id)
        else:
            record = self.api.records.by_task(request.task_id)
        access = self._access(record)
        return api_pb2.SandboxGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt)

    @unary
    async def SandboxTerminateV2(self, request: api_pb2.SandboxTerminateRequest,
                                 context: Context) -> api_pb2.SandboxTerminateResponse:
        await self.api.host(None, self.api.sandboxes.terminate, request.sandbox_id)
        return api_pb2.SandboxTerminateResponse()

    @unary
    async def SandboxWaitV2(self, request: api_pb2.SandboxWaitRequest, context: Context) -> api_pb2.SandboxWaitResponse:
        record = self.api.records.get(request.sandbox_id)
        if record.result is None:
            # Long polls of one sandbox take turns of their own: they never hold up its execs.
            await self.api.host(f"wait:{record.id}", self.api.sandboxes.wait, record.id,
                                min(max(request.timeout, 0.0), _MAX_WAIT_S))
        return api_pb2.SandboxWaitResponse(result=record.result, metadata=_handle_metadata(record))

    @unary
    async def SandboxGetFromNameV2(self, request: api_pb2.SandboxGetFromNameRequest,
                                   context: Context) -> api_pb2.SandboxGetFromNameResponse:
        app_id = self.api.records.app(request.app_name, create=False)
        record = self.api.records.by_name(app_id, request.sandbox_name, request.include_terminated)
        return api_pb2.SandboxGetFromNameResponse(sandbox_id=record.id, metadata=_handle_metadata(record))

    @unary
    async def SandboxListV2(self, request: api_pb2.SandboxListRequest, context: Context) -> api_pb2.SandboxListResponse:
        wanted = {t.tag_name: t.tag_value for t in request.tags}
        found = [s for s in self.api.records.all()
                 if (not request.app_id or s.app_id == request.app_id)
                 and (request.include_finished or s.result is None)
                 and (not request.before_timestamp or s.created < request.before_timestamp)
                 and all(s.tags.get(k) == v for k, v in wanted.items())]
        page = sorted(found, key=lambda s: s.created, reverse=True)[:_LIST_PAGE]
        return api_pb2.SandboxListResponse(sandboxes=[api_pb2.SandboxInfo(
            id=s.id, created_at=s.created, app_id=s.app_id, tags=_tags(s), name=s.name, image_id=s.image_id,
            timeout_secs=s.timeout_s, idle_timeout_secs=s.idle_timeout_s, metadata=_handle_metadata(s),
            task_info=api_pb2.TaskInfo(id=s.task_id, started_at=s.created, finished_at=s.finished_at,
                                       result=s.result, sandbox_id=s.id)) for s in page])

    # There are no V1 sandboxes here: the SDK's V1 fallbacks of a lookup by name and of a listing see the same.
    SandboxGetFromName = SandboxGetFromNameV2
    SandboxList = SandboxListV2

    @unary
    async def SandboxTagsSetV2(self, request: api_pb2.SandboxTagsSetRequest,
                               context: Context) -> empty_pb2.Empty:
        record = self.api.records.get(request.sandbox_id)
        record.tags = {t.tag_name: t.tag_value for t in request.tags}
        return empty_pb2.Empty()

    @unary
    async def SandboxTagsGetV2(self, request: api_pb2.SandboxTagsGetRequest,
                               context: Context) -> api_pb2.SandboxTagsGetResponse:
        return api_pb2.SandboxTagsGetResponse(tags=_tags(self.api.records.get(request.sandbox_id)))

    @unary
    async def SandboxGetTunnelsV2(self, request: api_pb2.SandboxGetTunnelsRequest,
                                  context: Context) -> api_pb2.SandboxGetTunnelsResponse:
        self.api.records.get(request.sandbox_id)
        return api_pb2.SandboxGetTunnelsResponse()  # no port is ever open: a sandbox asking for one is refused

    @unary
    async def SandboxRestoreV2(self, request: api_pb2.SandboxRestoreV2Request,
                               context: Context) -> api_pb2.SandboxRestoreV2Response:
        raise Unimplemented("memory snapshots cannot be restored here: worldrt's modal provider snapshots a "
                            "sandbox's files only; use sb.snapshot_filesystem() and Sandbox.create(image=...)")
