"""The hosts the client's tests talk to: a real ``worldrt host serve`` process and a host embedded in the
test process, each for one test module, and a client of each (``rt`` runs a test against both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import HostProcess, alive, processes_under, wait_for
from worldrt.client import Client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    host = HostProcess(tmp_path_factory.mktemp("served"))
    yield host
    host.stop()


@pytest.fixture(scope="module")
def remote(served: HostProcess) -> Iterator[Client]:
    with Client.connect(served.address, home=served.home) as client:
        assert client.remote
        yield client


def no_process_left(home: Path) -> None:
    """Bounded wait until nothing started for ``home`` (host, daemons, sandboxes) runs any more."""
    wait_for(lambda: not alive(processes_under(str(home))), 30, f"the processes of {home} ended")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    home = tmp_path_factory.mktemp("embedded")
    with Client.connect(home=home, db=home / "world.duckdb") as client:
        assert not client.remote
        yield client
    no_process_left(home)


@pytest.fixture(params=["remote", "embedded"])
def rt(request: pytest.FixtureRequest) -> Client:
    """A client of a running host, then of an embedded one."""
    client: Client = request.getfixturevalue(request.param)
    return client
