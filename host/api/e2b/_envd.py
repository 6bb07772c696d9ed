"""What the envd services (the connectrpc apps shipped in the ``e2b`` wheel) share: the sandbox a call is
about, taken from its ``E2b-Sandbox-Id`` header (the guard has checked that sandbox's access token before
the call got here), calls on the host admitted per sandbox, and worldrt's errors as Connect errors.

A call waits on the host on an admitted thread (``Admission``): at most a few per sandbox at once, so one
slow sandbox slows only its own calls, and none holds the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from worldrt.errors import WorldError
from worldrt.host.api import Admission
from worldrt.host.api.e2b._sandboxes import E2bApi

T = TypeVar("T")
SANDBOX_HEADER = "e2b-sandbox-id"
KEEPALIVE_S = 30.0  # the SDK asks for a keepalive event at least every 50 s on a long stream


def connect_error(error: WorldError) -> ConnectError:
    try:
        code = Code[error.code.name]
    except KeyError:
        code = Code.INTERNAL
    if error.code.name == "CANCELLED":
        code = Code.CANCELED
    return ConnectError(code, error.message)


class Envd:
    """The sandbox of a call and the host's calls for it, for the Process and Filesystem services."""

    def __init__(self, api: E2bApi, admission: Admission) -> None:
        self.api, self.admission = api, admission

    @staticmethod
    def sandbox_id(ctx: RequestContext[Any, Any]) -> str:
        found = ctx.request_headers.get(SANDBOX_HEADER)
        if not found:
            raise ConnectError(Code.INVALID_ARGUMENT, "the request names no sandbox: send the E2b-Sandbox-Id header "
                                                      "(the SDK does when E2B_SANDBOX_URL points here)")
        return found

    async def run(self, sandbox_id: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on an admitted thread, its WorldError raised as a ConnectError."""
        try:
            return await self.admission.run(sandbox_id, fn, *args)
        except WorldError as exc:
            raise connect_error(exc) from None
