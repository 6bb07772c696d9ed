"""worldrt.loops: the servers' event loop is uvloop unless WORLDRT_EVENT_LOOP says asyncio."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from worldrt import loops


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.pure
def test_servers_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loops.ENV, raising=False)
    assert loops.run(_loop_module()).startswith("uvloop")
    loop = loops.new_event_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


@pytest.mark.pure
def test_asyncio_s_own_loop_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loops.ENV, "asyncio")
    assert loops.run(_loop_module()).startswith("asyncio")


@pytest.mark.pure
def test_an_unknown_loop_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loops.ENV, "trio")
    with pytest.raises(ValueError, match="WORLDRT_EVENT_LOOP is 'trio': use uvloop .* or asyncio"):
        loops.new_event_loop()


@pytest.mark.daemons
def test_a_provider_daemon_serves_on_either_loop() -> None:
    # The daemon's own process, once per loop: it starts, serves health and stops on SIGTERM.
    for choice in ("uvloop", "asyncio"):
        code = ("import os, sys; os.environ['WORLDRT_EVENT_LOOP'] = sys.argv[1]\n"
                "from worldrt.providers.testing import ProviderDaemon\n"
                "from worldrt.v1 import pb\n"
                "with ProviderDaemon('gensyn') as d:\n"
                "    print(d.stub.Capabilities(pb.CapabilitiesRequest(), metadata=d.metadata).provider_id)\n")
        done = subprocess.run([sys.executable, "-c", code, choice], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "gensyn", (choice, done.stderr[-2000:])
