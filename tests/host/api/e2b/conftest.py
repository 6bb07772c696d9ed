"""What the e2b API's test modules share: per module, a running host and ``worldrt api serve e2b`` on it (the
module's ``SERVER_ARGS`` added to its command line), the SDK pointed at it by its three variables; and a
sandbox per test, killed after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("e2b")

from e2b import Sandbox
from e2b.exceptions import SandboxException

from tests.support import HostProcess
from tests.support.e2b_api import E2bApiServer


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path_factory.mktemp(f"{request.module.__name__.rsplit('.', 1)[-1]}-host"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(host: HostProcess, request: pytest.FixtureRequest) -> Iterator[E2bApiServer]:
    api = E2bApiServer(host.home, host=host.address, args=tuple(getattr(request.module, "SERVER_ARGS", ())))
    with api.environment():
        yield api
    assert api.stop() in (0, 130)
    assert "Traceback" not in api.log(), api.log()[-4000:]


@pytest.fixture()
def sbx(server: E2bApiServer) -> Iterator[Sandbox]:
    sandbox = Sandbox.create()
    yield sandbox
    try:
        sandbox.kill()
    except SandboxException:
        pass
