"""Client.connect picks the host by the CLI's rule: the address given, else $WORLDRT_HOST, else
unix:HOME/host.sock with HOME from $WORLDRT_STATE_DIR; the token from the argument, a file, $WORLDRT_TOKEN
or HOME/host.token; nothing answering the local socket means an embedded host."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import HostProcess
from worldrt.client import Client
from worldrt.errors import Unauthenticated

pytestmark = pytest.mark.daemons


def test_the_defaults_and_the_environment_name_the_host(served: HostProcess, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("WORLDRT_HOST", "WORLDRT_TOKEN", "WORLDRT_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLDRT_STATE_DIR", str(served.home))
    with Client.connect() as by_home:  # unix:HOME/host.sock and HOME/host.token
        assert by_home.remote and by_home.address == served.address
        assert by_home.providers.list()
    monkeypatch.setenv("WORLDRT_STATE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("WORLDRT_HOST", served.address)
    monkeypatch.setenv("WORLDRT_TOKEN", served.token)
    with Client.connect() as by_env:
        assert by_env.remote and by_env.links.list() is not None
    token_file = tmp_path / "token"
    token_file.write_text("wrong\n")
    token_file.chmod(0o600)
    with Client.connect(token_file=token_file) as wrong, pytest.raises(Unauthenticated):
        wrong.links.list()
    assert not (tmp_path / "elsewhere").exists(), "no host was embedded while one answered"


def test_nothing_answering_the_local_socket_means_an_embedded_host(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLDRT_HOST", raising=False)
    monkeypatch.setenv("WORLDRT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WORLDRT_DB", str(tmp_path / "registry.duckdb"))
    with Client.connect() as rt:
        assert not rt.remote and rt.home == tmp_path / "state"
        assert rt.address == f"unix:{tmp_path / 'state' / 'host.sock'}"
    assert (tmp_path / "registry.duckdb").exists()
