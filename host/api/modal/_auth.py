"""Who may call the Modal-compatible API: the token pair the server was given, and the JWTs it signs.

Invariants: every call is decided on its metadata alone, before its request message is read or parsed
(``Gate`` answers a refused call with a handler that never reads one). A control-plane call must carry
exactly the server's ``x-modal-token-id`` and ``x-modal-token-secret`` (compared in constant time). A
task-command-router call must carry ``authorization: Bearer JWT`` where JWT is one this server signed
(HMAC-SHA256 with a key made at start, so a restarted server's old JWTs are refused and the SDK fetches new
ones) for the router, not expired; the JWT names the one sandbox task it opens, and the router's handlers
refuse any other task (``task_of``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
import grpc.aio

ROUTER_SERVICE = "/modal.task_command_router.TaskCommandRouter/"
CLIENT_AUDIENCE = "modal-api-client"
ROUTER_AUDIENCE = "modal-api-router"
JWT_TTL_S = 3600

BAD_PAIR = ("the token pair is not the one `worldrt api serve modal` was given: set MODAL_TOKEN_ID and "
            "MODAL_TOKEN_SECRET (or the profile `worldrt api serve modal --print-profile` prints) to the "
            "server's own pair")
BAD_JWT = ("the task command router's token is missing, expired or was not signed by this server: the SDK "
           "fetches a new one with SandboxGetCommandRouterAccess")

Metadata = Iterable[tuple[str, Any]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _values(metadata: Metadata | None, name: str) -> list[bytes]:
    found = []
    for key, value in metadata or ():
        if key == name:
            found.append(value.encode() if isinstance(value, str) else value)
    return found


class Tokens:
    """The server's token pair and its JWT signing key."""

    def __init__(self, token_id: str, token_secret: str, *, jwt_ttl_s: int = JWT_TTL_S) -> None:
        if not token_id or not token_secret:
            raise ValueError("both MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are needed")
        self._id, self._secret = token_id.encode(), token_secret.encode()
        self._key = secrets.token_bytes(32)
        self.jwt_ttl_s = jwt_ttl_s

    def pair_ok(self, metadata: Metadata | None) -> bool:
        ids, keys = _values(metadata, "x-modal-token-id"), _values(metadata, "x-modal-token-secret")
        if len(ids) != 1 or len(keys) != 1:
            return False
        # Both compared whatever the first gives: the time taken says nothing about either.
        same_id = hmac.compare_digest(ids[0], self._id)
        same_secret = hmac.compare_digest(keys[0], self._secret)
        return same_id and same_secret

    def sign(self, audience: str, subject: str) -> str:
        now = int(time.time())
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps({"aud": audience, "sub": subject, "iat": now, "exp": now + self.jwt_ttl_s},
                               separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(signature)}"

    def claims(self, token: str, audience: str) -> dict[str, Any] | None:
        """The claims of a JWT this server signed for ``audience`` and not yet expired; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 4096:
            return None
        try:
            signature = _unb64(parts[2])
            expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(signature, expected):
                return None
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("aud") != audience:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= time.time():
            return None
        return claims

    def router_subject(self, metadata: Metadata | None) -> str | None:
        """The task a router call's bearer JWT opens, or None when it carries no valid one."""
        values = _values(metadata, "authorization")
        if len(values) != 1 or not values[0].startswith(b"Bearer "):
            return None
        try:
            token = values[0][len(b"Bearer "):].decode("ascii")
        except UnicodeDecodeError:
            return None
        claims = self.claims(token, ROUTER_AUDIENCE)
        subject = claims.get("sub") if claims else None
        return subject if isinstance(subject, str) else None



def _refusal(message: str) -> grpc.RpcMethodHandler:
    # A streaming-request handler: the server hands it the request stream unread, and it never reads it.
    async def refuse(_requests: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.stream_stream_rpc_method_handler(refuse)


class Gate(grpc.aio.ServerInterceptor):
    """The check every call passes before anything of its body is read."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self._bad_pair = _refusal(BAD_PAIR)
        self._bad_jwt = _refusal(BAD_JWT)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        metadata = handler_call_details.invocation_metadata
        if handler_call_details.method.startswith(ROUTER_SERVICE):
            if self.tokens.router_subject(metadata) is None:
                return self._bad_jwt
        elif not self.tokens.pair_ok(metadata):
            return self._bad_pair
        return await continuation(handler_call_details)
