"""morph's two backends behind one ``stub``: the local engine (``morph``, the default) and the morphcloud
backend (``morph_cloud``), which here talks to worldrt's own ``api serve morph``, the only Morph API this
machine can reach. A test runs on the morphcloud backend too when it is parametrized with
``backend`` ("local", "morphcloud", indirect): only tests whose behaviour is the same on both are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import MorphApiServer, module_daemon
from worldrt.providers.testing import ProviderDaemon

BOTH_BACKENDS = pytest.mark.parametrize("backend", ["local", "morphcloud"], indirect=True)


@pytest.fixture(scope="package")
def morph_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MorphApiServer]:
    """`worldrt api serve morph` with an embedded host (and its own local morph daemon)."""
    server = MorphApiServer(tmp_path_factory.mktemp("morph-api"))
    yield server
    assert server.stop() in (0, 130)
    assert "Traceback" not in server.log(), server.log()[-4000:]


@pytest.fixture(scope="package")
def morph_cloud(tmp_path_factory: pytest.TempPathFactory, morph_api: MorphApiServer) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "morph", backend="morphcloud", base_url=morph_api.base_url,
                             api_key=morph_api.key)


@pytest.fixture()
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "local"))


@pytest.fixture()
def stub(request: pytest.FixtureRequest, backend: str) -> Any:
    return request.getfixturevalue("morph_cloud" if backend == "morphcloud" else "morph").stub
