"""A client of Morph Cloud's REST API (as the morphcloud SDK 0.1.116 speaks it) on httpx: the calls the
morphcloud backend makes, each answer's JSON, and Morph's HTTP errors as the project's error kinds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from worldrt import errors as err

DEFAULT_BASE_URL = "https://cloud.morph.so/api"
# How long a snapshot or an instance may stay "pending" before the call gives up.
READY_TIMEOUT_S = 600.0
_POLL_S = 0.5

_KINDS: dict[int, type[err.WorldError]] = {
    400: err.InvalidArgument, 401: err.Unauthenticated, 403: err.PermissionDenied, 404: err.NotFound,
    409: err.FailedPrecondition, 422: err.InvalidArgument, 429: err.ResourceExhausted,
}


def error_of(response: httpx.Response, where: str) -> err.WorldError:
    """The error kind of a Morph HTTP error (5xx and anything unknown: UNAVAILABLE), with Morph's detail."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail", body) if isinstance(body, dict) else body
    text = detail if isinstance(detail, str) else json.dumps(detail)
    kind = _KINDS.get(response.status_code, err.Unavailable)
    return kind(f"{where}: Morph answered {response.status_code}: {text[:500]}")


class MorphRest:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(60.0),
                                       headers={"Authorization": f"Bearer {api_key}",
                                                "Content-Type": "application/json"})

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, *, timeout_s: float | None = None, **kwargs: Any) -> Any:
        where = f"{method} {self.base_url}{path}"
        try:
            response = await self._http.request(method, path, timeout=timeout_s or httpx.USE_CLIENT_DEFAULT,
                                                 **kwargs)
        except httpx.TimeoutException as exc:
            raise err.DeadlineExceeded(f"{where}: no answer within {timeout_s or 60.0:g} s") from exc
        except httpx.TransportError as exc:
            raise err.Unavailable(f"{where}: cannot reach Morph Cloud: {exc}") from exc
        if response.is_error:
            raise error_of(response, where)
        return response.json() if response.content else None

    async def ready(self, kind: str, item: dict[str, Any]) -> dict[str, Any]:
        """Poll ``GET /{kind}/{id}`` until it is ready, as the SDK's ``wait_until_ready`` does."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while item.get("status") != "ready":
            if item.get("status") in ("error", "failed"):
                raise err.Aborted(f"Morph {kind} {item.get('id')} ended in status {item.get('status')!r}")
            if time.monotonic() > deadline:
                raise err.DeadlineExceeded(f"Morph {kind} {item.get('id')} was not ready within {READY_TIMEOUT_S:g} s")
            await asyncio.sleep(_POLL_S)
            item = await self.call("GET", f"/{kind}/{item['id']}")
        return item

    async def exec_events(self, instance_id: str, command: list[str], timeout_s: float) -> AsyncIterator[dict[str, Any]]:
        """``POST /instance/{id}/exec/sse``: each ``data:`` event's JSON, until ``[DONE]``."""
        where = f"POST {self.base_url}/instance/{instance_id}/exec/sse"
        try:
            async with self._http.stream("POST", f"/instance/{instance_id}/exec/sse", json={"command": command},
                                         headers={"Accept": "text/event-stream"},
                                         timeout=httpx.Timeout(60.0, read=timeout_s)) as response:
                if response.is_error:
                    await response.aread()
                    raise error_of(response, where)
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        yield event
        except httpx.TimeoutException as exc:
            raise err.DeadlineExceeded(f"{where}: no output within {timeout_s:g} s (the command may still run on "
                                       f"Morph)") from exc
        except httpx.TransportError as exc:
            raise err.Unavailable(f"{where}: cannot reach Morph Cloud: {exc}") from exc
