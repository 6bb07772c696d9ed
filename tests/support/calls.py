"""Calls on a provider stub that many tests make."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from worldrt.v1 import pb


def run(stub: Any, instance_id: str, code: str, **fields: Any) -> pb.ExecutionResult:
    return stub.Execute(pb.ExecuteRequest(instance_id=instance_id, code=code, **fields))


def status_of(call: Any) -> grpc.StatusCode:
    """The status code ``call()`` fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()
