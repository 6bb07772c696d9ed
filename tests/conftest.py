"""Fixtures every test directory shares, and the two tiers: ``pure`` tests (no process of their own, run
them with ``pytest -m pure``) and ``daemons`` tests (real provider daemons, hosts and sandboxes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.support import CACHE, module_daemon  # noqa: F401 - CACHE sets WORLDRT_CACHE for every host a test starts
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

TIERS = ("pure", "daemons")
TIER = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pure: runs in the test process alone (no daemon, host or sandbox)")
    config.addinivalue_line("markers", "daemons: starts real provider daemons, hosts or sandboxes")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than this machine's cores. Alone, the workers leave about a third of the
    cores idle while each waits (daemons starting, sandboxes' lifetimes, deadlines); on 2 cores the third
    worker took the suite from 9:36 to 8:42."""
    return len(os.sched_getaffinity(0)) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test is in exactly one tier (its module's ``pytestmark``, or its own mark)."""
    for item in items:
        tiers = {m.name for m in item.iter_markers() if m.name in TIERS}
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid} must be marked exactly one of {TIERS}, it has {sorted(tiers)}")
        item.stash[TIER] = tiers.pop()


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == me:
                        found.add(int(entry))
            except (OSError, IndexError):
                continue
    return found


@pytest.fixture(autouse=True)
def _tier_is_honest(request: pytest.FixtureRequest) -> Iterator[None]:
    """A pure test that leaves a process of its own running belongs to the daemons tier."""
    if request.node.stash.get(TIER, "") != "pure":
        yield
        return
    before = _children()
    yield
    started = _children() - before
    assert not started, f"{request.node.nodeid} is marked pure but left processes running: {sorted(started)}"


@pytest.fixture(scope="module")
def morph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "morph", pool_size="2")


@pytest.fixture()
def stub(morph: ProviderDaemon) -> Any:
    return morph.stub


@pytest.fixture()
def instance(stub: Any) -> Iterator[str]:
    inst = stub.Start(pb.StartRequest())
    yield inst.instance_id
    try:
        stub.Stop(pb.InstanceRef(instance_id=inst.instance_id))
    except grpc.RpcError:
        pass
