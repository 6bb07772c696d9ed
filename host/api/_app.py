"""The HTTP face of ``MorphApi``: Morph Cloud's REST paths under ``/api``, as the morphcloud SDK calls
them, with its JSON and its error bodies (``{"detail": …, "error_code": …}``, or FastAPI's list form for
a request that does not parse). It is served behind the guard (the key, checked on the headers before any
body is read, and the bounds of ``HttpLimits``), which answers with ``problem_body``.

Handlers that only read or change the API's own records run on the event loop and hold no thread; the ones
that wait on the host go through ``Admission`` (a thread pool of their own, per-instance turns), so a slow
instance slows only itself and a cheap GET is never queued behind anyone's exec.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Body, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from worldrt.errors import Unimplemented, WorldError
from worldrt.host.api._admission import Admission, Busy, Saturated
from worldrt.host.api._guard import AsgiApp, Receive, Scope, Send
from worldrt.host.api._limits import HttpLimits
from worldrt.host.api._morph import MorphApi
from worldrt.host.api._stream import stream_exec

_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 422, grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.ABORTED: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    # The host refusing this server is the server's trouble, not the caller's key.
    grpc.StatusCode.UNAUTHENTICATED: 503, grpc.StatusCode.PERMISSION_DENIED: 503,
}
_METADATA_KEY = re.compile(r"^metadata\[(.+)\]$")

UNAUTHORIZED = "Invalid or missing API key: send Authorization: Bearer <the key `worldrt api serve morph` was given>"


def problem_body(status: int, detail: str, error_code: str) -> bytes:
    """Morph's error body; the guard answers with it too."""
    return json.dumps({"detail": detail, "error_code": error_code}).encode()


def problem(status: int, detail: str, error_code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "error_code": error_code}, status_code=status, headers=headers)


async def _world_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WorldError)
    retry = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, (Busy, Saturated)) else None
    return problem(http_status(exc), exc.message, exc.code.name.lower(), retry)


async def _unparsable(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 list form; a body that is not UTF-8 is echoed with replacement characters (FastAPI's
    own handler fails on those bytes)."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
    return JSONResponse({"detail": errors}, status_code=422)


def http_status(error: WorldError) -> int:
    return _STATUS.get(error.code, 500)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SnapshotCreate(_Loose):
    image_id: str | None = None
    vcpus: int | None = None
    memory: int | None = None
    disk_size: int | None = None
    digest: str | None = None
    metadata: dict[str, str] | None = None
    ttl_seconds: int | None = None


class InstanceStart(_Loose):
    metadata: dict[str, str] | None = None
    ttl_seconds: int | None = None
    ttl_action: Literal["stop", "pause"] | None = None


class SnapshotBoot(InstanceStart):
    vcpus: int | None = None
    memory: int | None = None
    disk_size: int | None = None


class Exec(_Loose):
    command: list[str]


class InstanceSnapshot(_Loose):
    metadata: dict[str, str] | None = None
    ttl_seconds: int | None = None


class TtlChange(_Loose):
    ttl_seconds: int | None = None
    ttl_action: Literal["stop", "pause"] | None = None


class WakeOn(_Loose):
    wake_on_ssh: bool | None = None
    wake_on_http: bool | None = None


def _metadata_filter(request: Request) -> dict[str, str]:
    found = {}
    for key, value in request.query_params.multi_items():
        match = _METADATA_KEY.match(key)
        if match:
            found[match.group(1)] = value
    return found


def _page(items: list[dict[str, Any]], key: str, page: int, limit: int) -> dict[str, Any]:
    total = len(items)
    pages = max(1, math.ceil(total / limit))
    chunk = items[(page - 1) * limit: page * limit]
    return {key: chunk, "total": total, "page": page, "size": len(chunk), "total_pages": pages,
            "has_next": page < pages, "has_prev": page > 1}


def _not_here(what: str, why: str) -> Callable[..., Any]:
    async def refuse() -> None:
        raise Unimplemented(f"{what} is not supported by worldrt's Morph-compatible API: {why}")

    return refuse


_NO_NETWORK = "worldrt sandboxes have no network (bubblewrap --unshare-net)"
_NO_SSH = ("there is no SSH server: use instance.exec (also with on_stdout/on_stderr for streamed output) "
           "instead of ssh, upload or download")
_NO_PAUSE = "worldrt instances cannot be paused, resumed or rebooted; snapshot then stop, and start from the snapshot"




def _collapse_slashes(app: AsgiApp) -> AsgiApp:
    """The SDK's sync SSE call joins ``base_url + "/instance/…"``, so a base URL ending in ``/`` sends ``//``."""

    async def collapsed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            scope = {**scope, "path": re.sub(r"/{2,}", "/", scope["path"])}
        await app(scope, receive, send)

    return collapsed


def create_app(api: MorphApi, limits: HttpLimits | None = None) -> AsgiApp:
    """The ASGI app: every Morph route under ``/api`` (its schema and docs too), to be served behind the
    guard (``serve_guarded``), which lets no request without the key reach it."""
    limits = limits or HttpLimits()
    admission = Admission(limits)
    app = FastAPI(title="worldrt: Morph Cloud compatible API", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.add_exception_handler(RequestValidationError, _unparsable)
    app.add_exception_handler(WorldError, _world_error)
    r = APIRouter(prefix="/api")
    host = admission.run  # a call that waits on the host: host(INSTANCE_ID or None, fn, *args)

    # images
    @r.get("/image")
    async def list_images() -> dict[str, Any]:
        return {"data": await host(None, api.list_images)}

    # snapshots
    @r.post("/snapshot")
    async def create_snapshot(body: SnapshotCreate) -> dict[str, Any]:
        return await host(None, api.create_snapshot, body.image_id, body.vcpus, body.memory, body.disk_size,
                          body.digest, body.metadata, body.ttl_seconds)

    @r.get("/snapshot")
    async def list_snapshots(request: Request, digest: str | None = None) -> dict[str, Any]:
        return {"data": api.list_snapshots(_metadata_filter(request), digest)}

    @r.get("/snapshot/list")
    async def list_snapshots_paginated(request: Request, digest: str | None = None,
                                       page: Annotated[int, Query(ge=1)] = 1,
                                       limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        return _page(api.list_snapshots(_metadata_filter(request), digest), "snapshots", page, limit)

    @r.get("/snapshot/{snapshot_id}")
    async def get_snapshot(snapshot_id: str) -> dict[str, Any]:
        return api.get_snapshot(snapshot_id)

    @r.delete("/snapshot/{snapshot_id}")
    async def delete_snapshot(snapshot_id: str) -> dict[str, Any]:
        await host(None, api.delete_snapshot, snapshot_id)
        return {"id": snapshot_id, "deleted": True}

    @r.post("/snapshot/{snapshot_id}/metadata")
    async def set_snapshot_metadata(snapshot_id: str, metadata: Annotated[dict[str, str], Body()]) -> dict[str, Any]:
        return api.set_snapshot_metadata(snapshot_id, metadata)

    @r.post("/snapshot/{snapshot_id}/ttl")
    async def set_snapshot_ttl(snapshot_id: str, body: TtlChange) -> dict[str, Any]:
        return api.set_snapshot_ttl(snapshot_id, body.ttl_seconds)

    @r.post("/snapshot/{snapshot_id}/boot")
    async def boot(snapshot_id: str, body: SnapshotBoot | None = None) -> dict[str, Any]:
        b = body or SnapshotBoot()
        return await host(None, api.start, snapshot_id, b.metadata, b.ttl_seconds, b.ttl_action, b.vcpus, b.memory,
                          b.disk_size)

    # instances
    @r.post("/instance")
    async def start(snapshot_id: str, body: InstanceStart | None = None) -> dict[str, Any]:
        b = body or InstanceStart()
        return await host(None, api.start, snapshot_id, b.metadata, b.ttl_seconds, b.ttl_action)

    @r.get("/instance")
    async def list_instances(request: Request) -> dict[str, Any]:
        return {"data": api.list_instances(_metadata_filter(request))}

    @r.get("/instance/list")
    async def list_instances_paginated(request: Request, page: Annotated[int, Query(ge=1)] = 1,
                                       limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        return _page(api.list_instances(_metadata_filter(request)), "instances", page, limit)

    @r.get("/instance/{instance_id}")
    async def get_instance(instance_id: str) -> dict[str, Any]:
        return api.get_instance(instance_id)

    @r.delete("/instance/{instance_id}")
    async def stop(instance_id: str) -> dict[str, Any]:
        # Not keyed by the instance: its own calls in flight must never keep it from being stopped.
        await host(None, api.stop, instance_id)
        return {"id": instance_id, "stopped": True}

    @r.post("/instance/{instance_id}/exec")
    async def execute(instance_id: str, body: Exec) -> dict[str, Any]:
        return await host(instance_id, api.execute, instance_id, body.command)

    @r.post("/instance/{instance_id}/exec/sse")
    async def execute_sse(instance_id: str, body: Exec) -> StreamingResponse:
        events = await stream_exec(api, admission, instance_id, body.command)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @r.post("/instance/{instance_id}/snapshot")
    async def snapshot(instance_id: str, digest: str | None = None,
                       body: InstanceSnapshot | None = None) -> dict[str, Any]:
        b = body or InstanceSnapshot()
        return await host(instance_id, api.snapshot, instance_id, digest, b.metadata, b.ttl_seconds)

    @r.post("/instance/{instance_id}/branch")
    async def branch(instance_id: str, count: int) -> dict[str, Any]:
        return await host(instance_id, api.branch, instance_id, count)

    @r.post("/instance/{instance_id}/metadata")
    async def set_metadata(instance_id: str, metadata: Annotated[dict[str, str], Body()]) -> dict[str, Any]:
        return api.set_metadata(instance_id, metadata)

    @r.post("/instance/{instance_id}/ttl")
    async def set_ttl(instance_id: str, body: TtlChange) -> dict[str, Any]:
        return api.set_ttl(instance_id, body.ttl_seconds, body.ttl_action)

    @r.post("/instance/{instance_id}/wake-on")
    async def set_wake_on(instance_id: str, body: WakeOn) -> dict[str, Any]:
        return api.set_wake_on(instance_id, body.model_dump(exclude_none=True))

    # what cannot work on this machine
    for path, methods, what, why in (
        ("/instance/{instance_id}/pause", ["POST"], "pause", _NO_PAUSE),
        ("/instance/{instance_id}/resume", ["POST"], "resume", _NO_PAUSE),
        ("/instance/{instance_id}/reboot", ["POST"], "reboot", _NO_PAUSE),
        ("/instance/{instance_id}/disk-resize", ["POST"], "disk resize",
         "an instance's disk is fixed when it starts (snapshot create's disk_size)"),
        ("/instance/{instance_id}/disk-resize/{operation_id}", ["GET"], "disk resize",
         "an instance's disk is fixed when it starts (snapshot create's disk_size)"),
        ("/instance/{instance_id}/http", ["POST"], "exposing an HTTP service", _NO_NETWORK),
        ("/instance/{instance_id}/http/{name}", ["DELETE"], "hiding an HTTP service", _NO_NETWORK),
        ("/instance/{instance_id}/ssh/key", ["GET", "POST"], "an SSH key", _NO_SSH),
        ("/user/{rest:path}", ["GET", "POST", "PUT", "PATCH", "DELETE"], "the user API (API keys, secrets, SSH keys, "
         "usage)", "worldrt has one API key, the one the server was started with"),
    ):
        r.add_api_route(path, _not_here(what, why), methods=methods, status_code=501)

    app.include_router(r)
    return _collapse_slashes(app)
