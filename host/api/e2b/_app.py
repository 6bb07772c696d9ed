"""The HTTP face of the E2B-compatible API: one plain HTTP/1.1 port for the control plane (REST, with
``X-API-KEY``), envd (Connect RPC: the ``ProcessASGIApplication`` and ``FilesystemASGIApplication`` of the
``e2b`` wheel, plus ``/files`` and ``/health``) and the code interpreter (``/execute``, ``/contexts``).

A request with an ``E2b-Sandbox-Id`` header is a sandbox's (envd or the interpreter): ``authorized`` lets it
in only with that sandbox's access token (``X-Access-Token``, or the interpreter's
``E2B-Traffic-Access-Token``); any other request needs the API key. The guard checks this on the headers,
before a body is read. Errors are E2B's body ``{"code": status, "message": …}``.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Annotated, Any

import grpc
from e2b.envd.filesystem.filesystem_connect import FilesystemASGIApplication
from e2b.envd.process.process_connect import ProcessASGIApplication
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from worldrt.errors import InvalidArgument, Unimplemented, WorldError
from worldrt.host.api import Admission, Busy, HttpLimits, Saturated
from worldrt.host.api.e2b._disconnect import until_disconnect
from worldrt.host.api.e2b._envd import SANDBOX_HEADER, Envd
from worldrt.host.api.e2b._filesystem import FilesystemService
from worldrt.host.api.e2b._interpreter import Interpreter
from worldrt.host.api.e2b._process import ProcessService
from worldrt.host.api.e2b._sandboxes import E2bApi

Headers = list[tuple[bytes, bytes]]
_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.ABORTED: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAUTHENTICATED: 503, grpc.StatusCode.PERMISSION_DENIED: 503,
}
UNAUTHORIZED = ("Invalid API key or access token: send X-API-KEY <the E2B_API_KEY `worldrt api serve e2b` was "
                "started with>, or for a sandbox's own calls the access token its create returned")
_METADATA = re.compile(r"^([^=&]+)=([^&]*)$")


def problem_body(status: int, detail: str, error_code: str) -> bytes:
    return json.dumps({"code": status, "message": detail}).encode()


def problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


def authorizer(api: E2bApi, api_key: str) -> Any:
    """The guard's check: a sandbox's call carries its token, any other the API key (constant-time compares)."""
    key = api_key.encode()

    def authorized(headers: Headers) -> bool:
        found: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            found.setdefault(name, []).append(value)
        sandbox_ids = found.get(SANDBOX_HEADER.encode(), [])
        if sandbox_ids:
            if len(sandbox_ids) != 1:
                return False
            sandbox = api.records.find(sandbox_ids[0].decode("latin-1"))
            if sandbox is None:
                return True  # no sandbox, no secret: the app answers 502 "was not found", as E2B's proxy does
            access, traffic = found.get(b"x-access-token", []), found.get(b"e2b-traffic-access-token", [])
            if len(access) > 1 or len(traffic) > 1:
                return False
            return sandbox.authorized(access[0] if access else None, traffic[0] if traffic else None)
        keys = found.get(b"x-api-key", [])
        return len(keys) == 1 and hmac.compare_digest(keys[0], key)

    return authorized


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class NewSandbox(_Loose):
    template_id: str = Field("base", alias="templateID")
    timeout: int | None = None
    auto_pause: bool = Field(False, alias="autoPause")
    auto_resume: dict[str, Any] | None = Field(None, alias="autoResume")
    allow_internet_access: bool | None = Field(None, alias="allowInternetAccess")
    metadata: dict[str, str] | None = None
    env_vars: dict[str, str] | None = Field(None, alias="envVars")


class Timeout(_Loose):
    timeout: int


class Connect(_Loose):
    timeout: int | None = None


class SnapshotBody(_Loose):
    name: str | None = None


class Fork(_Loose):
    count: int = 1
    timeout: int | None = None


class Execute(_Loose):
    code: str
    context_id: str | None = None
    language: str | None = None
    env_vars: dict[str, str] | None = None


class NewContext(_Loose):
    language: str | None = None
    cwd: str | None = None


def _not_here(what: str, why: str) -> Any:
    async def refuse() -> None:
        raise Unimplemented(f"{what} is not supported by worldrt's E2B-compatible API: {why}")

    return refuse


def _metadata(query: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in (query or "").split("&"):
        match = _METADATA.match(part)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _sandbox_of(request: Request) -> str:
    found = request.headers.get(SANDBOX_HEADER)
    if not found:
        raise InvalidArgument("the request names no sandbox: send the E2b-Sandbox-Id header")
    return found


_SANDBOX_PATHS = ("/process.Process/", "/filesystem.Filesystem/", "/files", "/health", "/execute", "/contexts")


def _sandbox_header(scope: Any) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == SANDBOX_HEADER.encode():
            return str(value.decode("latin-1"))
    return None


def create_app(api: E2bApi, limits: HttpLimits | None = None) -> Any:
    """The ASGI app: control plane, envd and interpreter routes, to be served behind the guard."""
    limits = limits or HttpLimits()
    admission = Admission(limits)
    envd = Envd(api, admission)
    interpreter = Interpreter(api, admission)
    app = FastAPI(title="worldrt: E2B compatible API", docs_url=None, redoc_url=None, openapi_url=None)

    async def world_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, WorldError)
        retry = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, (Busy, Saturated)) else None
        return problem(_STATUS.get(exc.code, 500), exc.message, retry)

    async def unparsable(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(400, f"the request does not parse: {where}: {first.get('msg', 'invalid')}")

    app.add_exception_handler(WorldError, world_error)
    app.add_exception_handler(RequestValidationError, unparsable)
    r = APIRouter()
    host = admission.run

    # control plane -----------------------------------------------------------------------------------
    async def create(body: NewSandbox) -> JSONResponse:
        if (body.auto_resume or {}).get("enabled"):
            raise InvalidArgument("auto_resume=True is not supported by worldrt's E2B-compatible API: a paused "
                                  "sandbox here resumes only through Sandbox.connect(sandbox_id); create it with "
                                  "lifecycle={'on_timeout': 'pause'} and call connect to resume it")
        made = await host(None, api.create, body.template_id, body.timeout, body.metadata, body.env_vars,
                          body.auto_pause, body.allow_internet_access)
        return JSONResponse(made, status_code=201)

    r.add_api_route("/sandboxes", create, methods=["POST"])
    r.add_api_route("/v2/sandboxes", create, methods=["POST"])

    @r.get("/sandboxes/{sandbox_id}")
    async def info(sandbox_id: str) -> dict[str, Any]:
        return api.info(sandbox_id)

    async def listed(metadata: str | None = None,
                     state: Annotated[list[str] | None, Query()] = None) -> list[dict[str, Any]]:
        states = [s for given in state or [] for s in given.split(",") if s]
        return api.listed(_metadata(metadata), states)

    r.add_api_route("/sandboxes", listed, methods=["GET"])
    r.add_api_route("/v2/sandboxes", listed, methods=["GET"])

    @r.delete("/sandboxes/{sandbox_id}", status_code=204)
    async def kill(sandbox_id: str) -> Response:
        await host(None, api.kill, sandbox_id)
        return Response(status_code=204)

    @r.post("/sandboxes/{sandbox_id}/timeout", status_code=204)
    async def set_timeout(sandbox_id: str, body: Timeout) -> Response:
        api.set_timeout(sandbox_id, body.timeout)
        return Response(status_code=204)

    async def connect(sandbox_id: str, body: Connect | None = None) -> JSONResponse:
        made = await host(sandbox_id, api.connect, sandbox_id, (body or Connect()).timeout)
        return JSONResponse(made, status_code=200)

    r.add_api_route("/sandboxes/{sandbox_id}/connect", connect, methods=["POST"])
    r.add_api_route("/v2/sandboxes/{sandbox_id}/connect", connect, methods=["POST"])
    r.add_api_route("/sandboxes/{sandbox_id}/resume", connect, methods=["POST"])

    @r.post("/sandboxes/{sandbox_id}/pause", status_code=204)
    async def pause(sandbox_id: str) -> Response:
        await host(sandbox_id, api.pause, sandbox_id)
        return Response(status_code=204)

    @r.post("/sandboxes/{sandbox_id}/snapshots", status_code=201)
    async def create_snapshot(sandbox_id: str, body: SnapshotBody | None = None) -> JSONResponse:
        made = await host(sandbox_id, api.create_snapshot, sandbox_id, (body or SnapshotBody()).name)
        return JSONResponse(made, status_code=201)

    @r.get("/snapshots")
    async def list_snapshots(sandboxID: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        return api.list_snapshots(sandboxID, name)

    @r.delete("/templates/{template_id}", status_code=204)
    async def delete_snapshot(template_id: str) -> Response:
        await host(None, api.delete_snapshot, template_id)
        return Response(status_code=204)

    @r.post("/sandboxes/{sandbox_id}/fork", status_code=201)
    async def fork(sandbox_id: str, body: Fork | None = None) -> JSONResponse:
        b = body or Fork()
        return JSONResponse(await host(sandbox_id, api.fork, sandbox_id, b.count, b.timeout), status_code=201)

    for path, methods, what, why in (
        ("/sandboxes/{sandbox_id}/metrics", ["GET"], "sandbox metrics",
         "worldrt does not sample a sandbox's CPU, memory and disk use over time"),
        ("/sandboxes/metrics", ["GET"], "sandbox metrics",
         "worldrt does not sample a sandbox's CPU, memory and disk use over time"),
        ("/sandboxes/{sandbox_id}/network", ["PUT"], "changing a sandbox's network",
         "worldrt sandboxes have no network (bubblewrap --unshare-net)"),
        ("/sandboxes/{sandbox_id}/logs", ["GET"], "sandbox logs", "worldrt keeps no log of a sandbox's own"),
        ("/v2/sandboxes/{sandbox_id}/logs", ["GET"], "sandbox logs", "worldrt keeps no log of a sandbox's own"),
        ("/sandboxes/{sandbox_id}/refreshes", ["POST"], "refresh", "use set_timeout"),
        ("/templates", ["GET", "POST"], "templates", "custom template builds need Docker and E2B's builder; "
         "start from 'base' or from a snapshot (create_snapshot)"),
        ("/v2/templates", ["POST"], "template builds", "custom template builds need Docker and E2B's builder"),
        ("/v3/templates", ["POST"], "template builds", "custom template builds need Docker and E2B's builder"),
        ("/templates/{rest:path}", ["GET", "POST", "PATCH"], "templates",
         "custom template builds need Docker and E2B's builder"),
        ("/volumes{rest:path}", ["GET", "POST", "DELETE"], "volumes", "worldrt has no shared volumes"),
        ("/secrets{rest:path}", ["GET", "POST", "PATCH", "DELETE"], "secrets", "worldrt has one API key"),
    ):
        r.add_api_route(path, _not_here(what, why), methods=methods, status_code=501)

    # envd's plain HTTP routes ---------------------------------------------------------------------------
    @r.get("/health", status_code=204)
    async def health(request: Request) -> Response:
        api.running(_sandbox_of(request))
        return Response(status_code=204)

    @r.get("/files")
    async def download(request: Request, path: str) -> Response:
        sandbox_id = _sandbox_of(request)
        data = await host(sandbox_id, api.read_file, sandbox_id, path)
        return Response(data, media_type="application/octet-stream")

    @r.post("/files")
    async def upload(request: Request, path: str | None = None) -> list[dict[str, Any]]:
        sandbox_id = _sandbox_of(request)
        written: list[dict[str, Any]] = []
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=64, max_fields=64, max_part_size=limits.max_body_bytes)
            for _name, part in form.multi_items():
                if isinstance(part, str):
                    continue
                target = path or part.filename or ""
                data = await part.read()
                written.append(await host(sandbox_id, api.write_file, sandbox_id, target, data))
            return written
        data = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            import gzip
            data = gzip.decompress(data)[: limits.max_body_bytes + 1]
            if len(data) > limits.max_body_bytes:
                raise InvalidArgument(f"the file is larger than this server takes ({limits.max_body_bytes} bytes)")
        return [await host(sandbox_id, api.write_file, sandbox_id, path or "", data)]

    # code interpreter -----------------------------------------------------------------------------------
    @r.post("/execute")
    async def execute(request: Request, body: Execute) -> StreamingResponse:
        sandbox_id = _sandbox_of(request)
        lines = await interpreter.execute(sandbox_id, body.code, body.context_id, body.language, body.env_vars or {})
        return StreamingResponse(lines, media_type="application/x-ndjson")

    @r.post("/contexts")
    async def create_context(request: Request, body: NewContext | None = None) -> dict[str, Any]:
        b = body or NewContext()
        return interpreter.create_context(_sandbox_of(request), b.language, b.cwd)

    @r.get("/contexts")
    async def list_contexts(request: Request) -> list[dict[str, Any]]:
        return interpreter.list_contexts(_sandbox_of(request))

    @r.post("/contexts/{context_id}/restart")
    async def restart_context(request: Request, context_id: str) -> Response:
        sandbox_id = _sandbox_of(request)
        await host(sandbox_id, interpreter.restart_context, sandbox_id, context_id)
        return Response(status_code=204)

    @r.delete("/contexts/{context_id}")
    async def remove_context(request: Request, context_id: str) -> Response:
        sandbox_id = _sandbox_of(request)
        await host(sandbox_id, interpreter.remove_context, sandbox_id, context_id)
        return Response(status_code=204)

    app.include_router(r)
    process = ProcessASGIApplication(ProcessService(envd), read_max_bytes=limits.max_body_bytes)
    filesystem = FilesystemASGIApplication(FilesystemService(envd), read_max_bytes=limits.max_body_bytes)
    # A stream (Start, Connect, WatchDir) whose client goes away ends then, not at its next write.
    process_app, filesystem_app = until_disconnect(process), until_disconnect(filesystem)

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        sandbox_id = _sandbox_header(scope)
        if path and sandbox_id is not None:
            if not path.startswith(_SANDBOX_PATHS):
                # A sandbox's token opens that sandbox's envd and interpreter, never the control plane.
                await problem(403, f"{path} is a control-plane path: send the API key (X-API-KEY), not a sandbox's "
                                   f"access token")(scope, receive, send)
                return
            if api.records.find(sandbox_id) is None:
                await problem(502, f"The sandbox {sandbox_id} was not found (it was killed or reached its "
                                   f"timeout)")(scope, receive, send)
                return
        if path.startswith(process.path + "/"):
            await process_app(scope, receive, send)
        elif path.startswith(filesystem.path + "/"):
            await filesystem_app(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch
