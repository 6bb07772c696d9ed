"""A provider daemon says why beside its status: the ``x-worldrt-reason`` trailer, read back into
``error.reason`` by ``worldrt.errors.from_rpc_error``, so no caller has to read a sentence to decide."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from tests.support import module_daemon
from worldrt import errors
from worldrt.errors import REASON_TRAILER, Reason, from_rpc_error
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def modal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "modal", pool_size="1")


def _failure(call: Callable[[], Any]) -> tuple[errors.WorldError, grpc.RpcError]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return from_rpc_error(info.value), info.value  # type: ignore[arg-type]


def _expect(call: Callable[[], Any], kind: type[errors.WorldError], reason: str) -> errors.WorldError:
    error, raw = _failure(call)
    assert type(error) is kind and error.reason == reason, (type(error), error.reason, error.message)
    assert (REASON_TRAILER, reason) in tuple(raw.trailing_metadata() or ())
    return error


@pytest.mark.parametrize("daemon", ["morph", "modal"])
def test_an_instance_never_known_and_one_stopped_say_which(request: pytest.FixtureRequest, daemon: str) -> None:
    stub = request.getfixturevalue(daemon).stub
    _expect(lambda: stub.Execute(pb.ExecuteRequest(instance_id="i-000000000000", code="1")),
            errors.NotFound, Reason.INSTANCE_NOT_FOUND)
    iid = stub.Start(pb.StartRequest()).instance_id
    stub.Stop(pb.InstanceRef(instance_id=iid))
    gone = _expect(lambda: stub.Execute(pb.ExecuteRequest(instance_id=iid, code="1")),
                   errors.FailedPrecondition, Reason.INSTANCE_GONE)
    assert iid in gone.message
    _expect(lambda: stub.ListFiles(pb.ListFilesRequest(instance_id=iid)), errors.FailedPrecondition,
            Reason.INSTANCE_GONE)


def test_an_instance_that_breaks_off_its_run_is_gone_by_its_reason(morph: ProviderDaemon) -> None:
    iid = morph.stub.Start(pb.StartRequest()).instance_id
    # The interpreter ends its own process mid-run: the run is broken off and the instance is stopped.
    died = _expect(lambda: morph.stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import os\nos._exit(0)")),
                   errors.Aborted, Reason.INSTANCE_GONE)
    assert "it is stopped" in died.message
    _expect(lambda: morph.stub.Execute(pb.ExecuteRequest(instance_id=iid, code="1")), errors.FailedPrecondition,
            Reason.INSTANCE_GONE)


def test_a_snapshot_never_known_and_one_dropped_say_which(morph: ProviderDaemon, modal: ProviderDaemon) -> None:
    for stub in (morph.stub, modal.stub):
        _expect(lambda: stub.Start(pb.StartRequest(snapshot_id="s-000000000000")), errors.NotFound,
                Reason.SNAPSHOT_NOT_FOUND)
    iid = morph.stub.Start(pb.StartRequest()).instance_id
    sid = morph.stub.Snapshot(pb.SnapshotRequest(instance_id=iid)).snapshot_id
    morph.stub.Stop(pb.InstanceRef(instance_id=iid))
    morph.stub.Stop(pb.InstanceRef(instance_id=sid))
    _expect(lambda: morph.stub.Branch(pb.BranchRequest(snapshot_id=sid, count=1)), errors.NotFound,
            Reason.SNAPSHOT_GONE)


def test_an_image_not_here_says_so(morph: ProviderDaemon) -> None:
    _expect(lambda: morph.stub.InspectImage(pb.ImageRef(image="no-such-image")), errors.NotFound,
            Reason.IMAGE_NOT_FOUND)


def test_an_error_without_a_reason_has_none(morph: ProviderDaemon) -> None:
    error, raw = _failure(lambda: morph.stub.Branch(pb.BranchRequest(snapshot_id="s-x", count=0)))
    assert type(error) is errors.InvalidArgument and error.reason == ""
    assert REASON_TRAILER not in dict(raw.trailing_metadata() or ())
