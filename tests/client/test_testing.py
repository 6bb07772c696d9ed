"""worldrt.testing: a runtime of a test's own, embedded or a real `worldrt host serve`, that stops every process
it started and removes the folder it made, also when the test fails inside it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.support import alive, processes_under
from worldrt.testing import AsyncRuntime, Runtime

pytestmark = pytest.mark.daemons


def _running(folder: Path) -> set[int]:
    return alive(processes_under(str(folder)))


@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_a_runtime_stops_everything_it_started(server: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings of the caller's environment never send the runtime elsewhere.
    monkeypatch.setenv("WORLDRT_HOST", "unix:/nonexistent/host.sock")
    monkeypatch.setenv("WORLDRT_STATE_DIR", "/nonexistent")
    with Runtime.start_local(server=server) as rt:
        folder = rt.folder
        assert rt.client.remote is server and rt.address == f"unix:{folder / 'host.sock'}"
        inst = rt.client.start("morph")
        assert inst.exec("1 + 1").value == 2
        assert _running(folder), "the runtime's host and daemons run in its folder"
    assert not _running(folder) and not folder.exists()


def test_a_failing_test_inside_still_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "kept"
    with pytest.raises(ZeroDivisionError), Runtime.start_local(folder=folder) as rt:
        rt.client.start("morph").exec("1")
        _ = 1 / 0
    assert not _running(folder) and folder.is_dir(), "a folder the caller gave is kept"


@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_an_async_runtime_stops_everything_it_started(server: bool) -> None:
    async def main() -> Path:
        async with await AsyncRuntime.start_local(server=server) as rt:
            assert rt.client.remote is server
            async with await rt.client.start("morph") as inst:
                assert (await inst.exec("6 * 7")).value == 42
            return rt.folder

    folder = asyncio.run(main())
    assert not _running(folder) and not folder.exists()


def test_a_second_client_reaches_a_server_runtime() -> None:
    from worldrt.client import Client

    with Runtime.start_local(server=True) as rt:
        inst = rt.client.start("morph")
        with Client.connect(rt.address, home=rt.folder, embed=False) as other:
            assert other.instance(inst.id).exec("40 + 2").value == 42
        pid = os.getpid()
        assert pid not in processes_under(str(rt.folder))
