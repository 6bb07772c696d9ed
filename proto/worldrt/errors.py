"""The one error root of world-runtime, its typed kinds, the CLI's exit code of each kind, and reasons.

Every error the project raises on purpose is a ``WorldError``: it carries the gRPC status it ends a call
with and a sentence a person can act on. Each boundary maps errors by type: a servicer answers with
``error.code``, the host hands a component ``err(provider-error)`` with ``error.code.name``, the CLI
prints the sentence and exits with ``error.exit_code`` (``EXIT_CODES``, one number per kind).
``from_status`` turns a status received over gRPC back into its kind, so a call keeps its meaning across
hops.

Invariants:
- A class is exactly one kind: every ``WorldError`` subclass derives from the kind its ``code`` names
  (``kind_of(cls.code)``) and from no other kind. Errors of one origin but different kinds share an
  ``ErrorFamily`` (a base that is not a kind and has no code), so ``except TheFamily`` still catches
  them all while ``except DeadlineExceeded`` catches every timeout.
- No decision is taken by reading a message that another process wrote: a peer that needs to tell two
  errors of one kind apart reads ``error.reason``, a token sent beside the status in the
  ``x-worldrt-reason`` trailer (``Reason`` names the ones in use).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Self

import grpc

# The trailing-metadata key that carries an error's reason beside its status.
REASON_TRAILER = "x-worldrt-reason"


class Reason:
    """Why an error happened, for a program to act on (``error.reason``); a token, never a sentence.

    The set is open: a peer may send a reason this version does not name, which is kept as it came."""

    INSTANCE_GONE = "instance-gone"  # the instance existed and is stopped (Stop, merge, a crash, its TTL)
    INSTANCE_NOT_FOUND = "instance-not-found"  # the provider has no record of the instance
    SNAPSHOT_GONE = "snapshot-gone"  # the snapshot existed and was dropped (its TTL, a Stop)
    SNAPSHOT_NOT_FOUND = "snapshot-not-found"  # the provider has no record of the snapshot
    IMAGE_NOT_FOUND = "image-not-found"  # no image of that name on the provider
    HOST_BUSY = "host-busy"  # the host is past one of its admission limits (or does not answer); its message names it
    INSTANCE_BUSY = "instance-busy"  # calls on the instance at the host are past the limit per instance


class WorldError(Exception):
    """An error a client can act on: its gRPC status, its message and, when a program may act on it,
    its ``reason`` (a ``Reason`` token, "" when none)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self._extra: tuple[tuple[str, str | bytes], ...] = ()

    @property
    def trailers(self) -> tuple[tuple[str, str | bytes], ...]:
        """Trailing metadata sent with the status: the reason, if any, and what was set here (for example
        a partial result)."""
        return (((REASON_TRAILER, self.reason),) if self.reason else ()) + self._extra

    @trailers.setter
    def trailers(self, extra: Iterable[tuple[str, str | bytes]]) -> None:
        self._extra = tuple(extra)

    def add_trailers(self, *pairs: tuple[str, str | bytes]) -> None:
        """Send ``pairs`` too, after the trailers already set."""
        self._extra += pairs

    @property
    def exit_code(self) -> int:
        """The CLI's exit status for this error: its kind's number in ``EXIT_CODES``."""
        return exit_code_of(type(self))


class ErrorFamily(Exception):
    """A base for errors of one origin that are of different kinds (a sandbox's, a component's).

    It is not a kind and has no code: each concrete member also derives from exactly one kind, so
    ``except TheFamily`` catches the family and ``except Kind`` the kind. A family itself is never
    raised. The annotations tell type checkers what every member has (from ``WorldError``)."""

    code: grpc.StatusCode
    message: str
    reason: str
    trailers: tuple[tuple[str, str | bytes], ...]
    exit_code: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if not issubclass(cls, WorldError):
            raise TypeError(f"{cls.__name__} is a family of errors, not an error: raise one of its members")
        return super().__new__(cls, *args, **kwargs)


class InvalidArgument(WorldError):
    """The request (or command line) is wrong; the message says what to change."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(WorldError):
    """What the request names does not exist (here)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(WorldError):
    """What the request would create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(WorldError):
    """The system is not in a state where the request can run (a stopped instance, a missing tool)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(WorldError):
    """The request reads or seeks past the end of what exists."""

    code = grpc.StatusCode.OUT_OF_RANGE


class DeadlineExceeded(WorldError):
    """The call ran past its deadline and was stopped."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(WorldError):
    """A limit was reached (memory, disk, output, instances, the host's admission)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unimplemented(WorldError):
    """The provider or host does not do this."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Unavailable(WorldError):
    """A service could not be reached or could not serve; trying again later may work."""

    code = grpc.StatusCode.UNAVAILABLE


class Aborted(WorldError):
    """The operation was broken off (a sandbox broke the protocol, an invocation failed)."""

    code = grpc.StatusCode.ABORTED


class Unauthenticated(WorldError):
    """The caller did not prove who it is (no or a wrong token)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(WorldError):
    """The caller is known and may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Cancelled(WorldError):
    """The caller cancelled the operation (Ctrl-C)."""

    code = grpc.StatusCode.CANCELLED


class Internal(WorldError):
    """A bug: something that should not happen did (the message has the detail)."""

    code = grpc.StatusCode.INTERNAL


KINDS: tuple[type[WorldError], ...] = (
    InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, OutOfRange, DeadlineExceeded, ResourceExhausted,
    Unimplemented, Unavailable, Aborted, Unauthenticated, PermissionDenied, Cancelled, Internal)
_BY_CODE: dict[grpc.StatusCode, type[WorldError]] = {kind.code: kind for kind in KINDS}

# The CLI's exit status per kind, one number each. 0 is success and 1 is a command whose answer is "no"
# (a component returned err, an audit found unbalanced runs; `instance exec` passes the run's own status
# through). 2 is also argparse's status for a bad command line; 69 and 70 are sysexits.h's EX_UNAVAILABLE
# and EX_SOFTWARE, 124 is what timeout(1) exits with, 130 is 128 + SIGINT, as shells report Ctrl-C.
EXIT_CODES: Mapping[type[WorldError], int] = MappingProxyType({
    InvalidArgument: 2, NotFound: 3, AlreadyExists: 4, FailedPrecondition: 5, OutOfRange: 6, PermissionDenied: 7,
    Unauthenticated: 8, ResourceExhausted: 9, Aborted: 10, Unimplemented: 11, Unavailable: 69, Internal: 70,
    DeadlineExceeded: 124, Cancelled: 130,
})
# What each exit status tells a script, for ``worldrt --help`` and the README.
_EXIT_MEANINGS: Mapping[type[WorldError], str] = MappingProxyType({
    InvalidArgument: "the command line or a request is wrong (also argparse's usage errors)",
    NotFound: "what it names does not exist (an instance, snapshot, image, file, link)",
    AlreadyExists: "what it would create exists already",
    FailedPrecondition: "not possible in the current state (a stopped instance, a missing tool)",
    OutOfRange: "past the end of what exists",
    PermissionDenied: "not allowed for this caller",
    Unauthenticated: "no token, or the wrong one",
    ResourceExhausted: "a limit was reached (memory, disk, output, the host's admission)",
    Aborted: "broken off (a sandbox broke the protocol, a component trapped)",
    Unimplemented: "the provider or host does not do this",
    Unavailable: "a host or provider could not be reached or could not serve: try again",
    Internal: "a bug in worldrt (please report it with the message)",
    DeadlineExceeded: "ran past its deadline or timeout",
    Cancelled: "interrupted (Ctrl-C, SIGTERM)",
})


def kind_of(code: grpc.StatusCode) -> type[WorldError]:
    """The error kind a gRPC status code stands for (Internal for codes without one, UNKNOWN among them)."""
    return _BY_CODE.get(code, Internal)


def exit_code_of(cls: type[WorldError]) -> int:
    """The CLI's exit status for errors of class ``cls``: the number of the kind it derives from."""
    for base in cls.__mro__:
        if base in EXIT_CODES:
            return EXIT_CODES[base]
    return EXIT_CODES[Internal]


def exit_code_table() -> str:
    """The exit statuses of the CLI as aligned text lines, in the order of their numbers."""
    rows = [("0", "", "success"), ("1", "", 'the answer is "no" (a component returned err, an audit failed)')]
    rows += [(str(number), kind.__name__, _EXIT_MEANINGS[kind])
             for kind, number in sorted(EXIT_CODES.items(), key=lambda item: item[1])]
    width = max(len(kind) for _, kind, _ in rows)
    return "\n".join(f"{number:>4}  {kind:<{width}}  {meaning}" for number, kind, meaning in rows)


def from_status(code: grpc.StatusCode | None, message: str, where: str = "", *, reason: str = "") -> WorldError:
    """The typed error for a status that came back from a call (``where`` prefixes the message), with the
    reason that came with it (the ``x-worldrt-reason`` trailer or header)."""
    kind = kind_of(code) if code is not None else Unavailable
    return kind(f"{where}: {message}" if where else message, reason=reason)


def reason_in(metadata: Iterable[Any] | None) -> str:
    """The ``x-worldrt-reason`` value among gRPC metadata (pairs or ``_Metadatum``), "" when there is none."""
    for item in metadata or ():
        key, value = item[0], item[1]
        if key == REASON_TRAILER:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return ""


def from_rpc_error(exc: grpc.RpcError, where: str = "") -> WorldError:
    """The typed error for a failed gRPC call, with the reason its trailers carry."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    trailers = exc.trailing_metadata() if callable(getattr(exc, "trailing_metadata", None)) else None
    return from_status(code, details or (code.name if code else "the call failed"), where,
                       reason=reason_in(trailers))


_OS_KINDS: Mapping[int, type[WorldError]] = MappingProxyType({
    errno.ENOENT: NotFound, errno.EEXIST: AlreadyExists, errno.EACCES: PermissionDenied, errno.EPERM: PermissionDenied,
    errno.EISDIR: InvalidArgument, errno.ENOTDIR: InvalidArgument, errno.EINVAL: InvalidArgument,
    errno.ENOSPC: ResourceExhausted, errno.EDQUOT: ResourceExhausted, errno.EMFILE: ResourceExhausted,
    errno.ETIMEDOUT: DeadlineExceeded,
})


def kind_of_os_error(exc: OSError) -> type[WorldError]:
    """The kind an operating-system error stands for (by its errno; Unavailable for the rest: I/O failed)."""
    return _OS_KINDS.get(exc.errno or 0, Unavailable)


__all__ = ["WorldError", "ErrorFamily", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
           "OutOfRange", "DeadlineExceeded", "ResourceExhausted", "Unimplemented", "Unavailable", "Aborted",
           "Unauthenticated", "PermissionDenied", "Cancelled", "Internal", "KINDS", "EXIT_CODES", "REASON_TRAILER",
           "Reason", "kind_of", "exit_code_of", "exit_code_table", "from_status", "from_rpc_error", "reason_in",
           "kind_of_os_error"]
