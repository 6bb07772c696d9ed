"""The host as a process: supervision of provider daemons, links forwarded, the Host service, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support import HostProcess, alive, cli, processes_under, wait_gone
from worldrt.providers.testing import wait_serving
from worldrt.v1 import host_pb, host_rpc, pb, rpc

pytestmark = pytest.mark.daemons


@pytest.fixture()
def host(tmp_path: Path) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path)
    yield running
    running.stop()


def test_links_are_persisted_forwarded_replaced_and_deleted(host: HostProcess) -> None:
    put = cli(host.home, "link", "put", "generator=morph", "--json")
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["link_id"] == "*/generator/default"
    again = cli(host.home, "link", "put", "generator=morph", "--set", "tier=gold", "--json")
    assert json.loads(again.stdout)["existed"] is True
    morph = next(p for p in host.stub.ListProviders(host_pb.ListProvidersRequest()).providers
                 if p.provider_id == "morph")
    assert morph.status == "available" and morph.address.startswith("unix:")
    # The provider daemon holds the link the host forwarded (it answers DeleteLink with existed=True).
    links = host.stub.ListLinks(host_pb.ListLinksRequest()).links
    assert [(x.link_id, x.target_provider, list(x.interfaces)) for x in links] == [
        ("*/generator/default", "morph", ["generator"])]
    listed = json.loads(cli(host.home, "link", "list", "--json").stdout)["links"]
    assert listed[0]["target_provider"] == "morph"
    gone = cli(host.home, "link", "del", "generator")
    assert gone.returncode == 0, gone.stderr
    missing = cli(host.home, "link", "del", "generator")
    assert missing.returncode != 0 and "no link" in missing.stderr and missing.stderr.count("\n") == 1
    bad = cli(host.home, "link", "put", "generator=nobody")
    assert bad.returncode != 0 and "unknown provider 'nobody'" in bad.stderr and "Traceback" not in bad.stderr


def test_provider_status_starts_and_describes_the_daemon(host: HostProcess) -> None:
    status = cli(host.home, "provider", "status", "morph", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["status"] == "available" and data["trit"] == 1
    assert "python" in data["capabilities"]["languages"]
    listed = json.loads(cli(host.home, "providers", "list", "--json").stdout)
    assert listed["trit_sum"] == 0 and listed["gf3_balanced"] is True
    assert {p["provider_id"] for p in listed["providers"]} == {"morph", "modal", "primeintellect", "gensyn", "ritual"}


def test_a_killed_provider_is_restarted_and_the_registry_shows_it(host: HostProcess) -> None:
    state = host.stub.ProviderStatus(host_pb.ProviderStatusRequest(provider_id="morph"))
    os.kill(state.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    now = state
    while time.monotonic() < deadline:
        try:
            now = host.stub.ProviderStatus(host_pb.ProviderStatusRequest(provider_id="morph"))
        except grpc.RpcError:
            continue  # the call that finds it dead may fail while it restarts
        if now.pid != state.pid and now.status == "available":
            break
        time.sleep(0.2)
    assert now.pid != state.pid and now.restarts == 1 and now.status == "available"


def test_sigterm_of_the_host_leaves_no_process(tmp_path: Path) -> None:
    host = HostProcess(tmp_path)
    host.stub.ProviderStatus(host_pb.ProviderStatusRequest(provider_id="morph"))
    tree = processes_under(str(tmp_path))
    assert len(tree) >= 3, tree  # the host, the morph daemon and its sandboxes
    assert host.stop() == 0
    wait_gone(tree, 10)


def test_the_registry_has_one_writer(host: HostProcess, tmp_path: Path) -> None:
    # With a host running, the CLI goes through it; opening the file directly is refused in one line.
    direct = subprocess.run([sys.executable, "-c", "from worldrt.host.registry._store import Registry; "
                             f"Registry.open({str(tmp_path / 'world.duckdb')!r})"], capture_output=True, text=True)
    assert direct.returncode != 0 and "is in use by pid" in direct.stderr
    assert cli(host.home, "providers", "list").returncode == 0


def test_the_cli_refuses_a_corrupt_registry_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.duckdb").write_bytes(b"\x00garbage" * 512)
    out = cli(tmp_path, "providers", "list", "--db", str(tmp_path / "bad.duckdb"))
    assert out.returncode == 69 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "not a valid DuckDB database" in out.stderr


def test_the_host_service_has_health_reflection_and_auth(tmp_path: Path) -> None:
    env = {**os.environ, "WORLDRT_STATE_DIR": str(tmp_path), "WORLDRT_TOKEN": "t0ken"}
    proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "host", "serve"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"unix:{tmp_path / 'host.sock'}"
    try:
        wait_serving(address, proc=proc)
        with grpc.insecure_channel(address) as channel:
            stub = host_rpc.HostStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.ListLinks(host_pb.ListLinksRequest())
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert stub.ListLinks(host_pb.ListLinksRequest(),
                                  metadata=(("authorization", "Bearer t0ken"),)).links == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_the_embedded_host_stops_its_providers_when_the_command_ends(tmp_path: Path) -> None:
    out = cli(tmp_path, "provider", "status", "morph", "--json")
    assert out.returncode == 0, out.stderr
    pid = json.loads(out.stdout)["pid"]
    assert not alive({pid})
    assert not alive(processes_under(str(tmp_path)))
    # ...and the registry it wrote is there for the next command.
    assert json.loads(cli(tmp_path, "providers", "list", "--json").stdout)["providers"]


def test_a_provider_forwarded_link_is_held_by_the_daemon(host: HostProcess) -> None:
    cli(host.home, "link", "put", "generator=morph", "--source", "explorer")
    state = host.stub.ProviderStatus(host_pb.ProviderStatusRequest(provider_id="morph"))
    token = (host.home / "providers").exists()
    assert token
    # The daemon requires the host's token, so a client without it is refused: the host's links are its own.
    with grpc.insecure_channel(state.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            rpc.WorldRuntimeStub(channel).DeleteLink(pb.LinkConfig(link_id="explorer/generator/default"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_provider_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    import threading

    from worldrt.host import Host

    with Host(tmp_path / "w.duckdb", tmp_path) as embedded:
        started = threading.Thread(target=lambda: embedded.provider_status(host_pb.ProviderStatusRequest(provider_id="morph")))
        started.start()
        started.join()
        pid = embedded.supervisor.child("morph").proc.pid  # type: ignore[union-attr]
        time.sleep(1.0)
        assert alive({pid}) and embedded.provider_healthy("morph")


def test_a_hung_provider_is_replaced(tmp_path: Path) -> None:
    from worldrt.host import Host

    with Host(tmp_path / "w.duckdb", tmp_path) as embedded:
        embedded.supervisor.health_interval_s = 0.2
        child = embedded.supervisor.ensure("gensyn")
        hung = child.proc.pid  # type: ignore[union-attr]
        os.kill(hung, signal.SIGSTOP)  # alive, but answers nothing
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (child.proc.pid == hung or not embedded.provider_healthy("gensyn")):
                time.sleep(0.2)
            assert child.proc.pid != hung and embedded.provider_healthy("gensyn") and child.restarts == 1
        finally:
            try:
                os.kill(hung, signal.SIGKILL)
            except ProcessLookupError:
                pass
