"""Errors a provider raises; the server turns each into its gRPC status with the same sentence."""

from __future__ import annotations

import grpc


class ProviderError(Exception):
    """An error a client can act on: it carries the gRPC status code the call ends with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Extra trailing metadata sent with the status (for example a partial result).
        self.trailers: tuple[tuple[str, str | bytes], ...] = ()


class NotFound(ProviderError):
    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(ProviderError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ProviderError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class DeadlineExceeded(ProviderError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(ProviderError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unimplemented(ProviderError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Unavailable(ProviderError):
    code = grpc.StatusCode.UNAVAILABLE


class Aborted(ProviderError):
    code = grpc.StatusCode.ABORTED
