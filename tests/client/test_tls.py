"""The client reaches a HOST:PORT host over TLS with its CA and the host's token, sync and async; a TCP host
that does not answer is an error (never an embedded stand-in), a wrong token is Unauthenticated, and a token
is never sent in cleartext off loopback (198.18.0.1, RFC 2544's range: nothing is ever sent there)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import HostProcess, free_port
from worldrt.client import AsyncClient, Client
from worldrt.errors import FailedPrecondition, Unauthenticated, Unavailable
from worldrt.host.routing import init_tls

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def tls_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostProcess, Path]]:
    certs = tmp_path_factory.mktemp("certs")
    issued = init_tls(certs, ["localhost"], ["127.0.0.1"])
    cert, key, _ = issued.hosts["localhost"]
    host = HostProcess(tmp_path_factory.mktemp("tls-host"), "--listen", f"127.0.0.1:{free_port()}",
                       "--tls-cert", str(cert), "--tls-key", str(key), tls_ca=issued.ca_cert)
    yield host, issued.ca_cert
    host.stop()


def test_a_tls_host_is_reached_with_its_ca_and_token(tls_host: tuple[HostProcess, Path], tmp_path: Path) -> None:
    host, ca = tls_host
    with Client.connect(host.address, token=host.token, tls_ca=ca, home=tmp_path) as rt:
        assert rt.remote
        with rt.start() as inst:
            assert inst.exec("6 * 7").value == 42

    async def main() -> int:
        async with await AsyncClient.connect(host.address, token=host.token, tls_ca=ca, home=tmp_path) as rt:
            assert rt.remote
            async with await rt.start() as inst:
                return int((await inst.exec("6 * 7")).value)

    assert asyncio.run(main()) == 42
    assert not (tmp_path / "world.duckdb").exists(), "nothing was embedded"


def test_what_cannot_reach_a_tcp_host_safely_is_refused(tls_host: tuple[HostProcess, Path], tmp_path: Path) -> None:
    host, ca = tls_host
    with Client.connect(host.address, token="not-the-token", tls_ca=ca, home=tmp_path) as wrong, \
            pytest.raises(Unauthenticated):
        wrong.links.list()
    with pytest.raises(Unavailable, match="in cleartext"):
        Client.connect(host.address, token=host.token, home=tmp_path)
    with pytest.raises(FailedPrecondition, match="refusing to send a bearer token in cleartext"):
        Client.connect("198.18.0.1:7443", token="s3cret", home=tmp_path)
    with pytest.raises(FailedPrecondition, match="refusing to send a bearer token in cleartext"):
        asyncio.run(AsyncClient.connect("198.18.0.1:7443", token="s3cret", home=tmp_path))
    with pytest.raises(FailedPrecondition, match="refusing to send a bearer token in cleartext"):
        Client.connect("198.18.0.1:7443", token="s3cret", home=tmp_path, embed=False)
    assert not (tmp_path / "world.duckdb").exists()
