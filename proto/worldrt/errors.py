"""The one error root of world-runtime, and its typed kinds.

Every error the project raises on purpose is a ``WorldError``: it carries the gRPC status it ends a call
with and a sentence a person can act on. Each boundary maps errors by type: a servicer answers with
``error.code``, the host hands a component ``err(provider-error)`` with ``error.code.name``, the CLI
prints the sentence and exits with ``error.exit_code``. ``from_status`` turns a status received over gRPC
back into its kind, so a call keeps its meaning across hops.
"""

from __future__ import annotations

import grpc


class WorldError(Exception):
    """An error a client can act on: its gRPC status and its message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Extra trailing metadata sent with the status (for example a partial result).
        self.trailers: tuple[tuple[str, str | bytes], ...] = ()


class InvalidArgument(WorldError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(WorldError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(WorldError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(WorldError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(WorldError):
    code = grpc.StatusCode.OUT_OF_RANGE


class DeadlineExceeded(WorldError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(WorldError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unimplemented(WorldError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Unavailable(WorldError):
    code = grpc.StatusCode.UNAVAILABLE


class Aborted(WorldError):
    code = grpc.StatusCode.ABORTED


class Unauthenticated(WorldError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(WorldError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Cancelled(WorldError):
    code = grpc.StatusCode.CANCELLED
    exit_code = 130


class Internal(WorldError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[WorldError]] = {
    kind.code: kind for kind in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, OutOfRange,
                                 DeadlineExceeded, ResourceExhausted, Unimplemented, Unavailable, Aborted,
                                 Unauthenticated, PermissionDenied, Cancelled, Internal)
}


def kind_of(code: grpc.StatusCode) -> type[WorldError]:
    """The error kind a gRPC status code stands for (Internal for codes without one, UNKNOWN among them)."""
    return _BY_CODE.get(code, Internal)


def from_status(code: grpc.StatusCode | None, message: str, where: str = "") -> WorldError:
    """The typed error for a status that came back from a call (``where`` prefixes the message)."""
    kind = kind_of(code) if code is not None else Unavailable
    return kind(f"{where}: {message}" if where else message)


def from_rpc_error(exc: grpc.RpcError, where: str = "") -> WorldError:
    """The typed error for a failed gRPC call."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return from_status(code, details or (code.name if code else "the call failed"), where)


__all__ = ["WorldError", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition", "OutOfRange",
           "DeadlineExceeded", "ResourceExhausted", "Unimplemented", "Unavailable", "Aborted", "Unauthenticated",
           "PermissionDenied", "Cancelled", "Internal", "kind_of", "from_status", "from_rpc_error"]
