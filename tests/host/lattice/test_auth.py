"""Bearer tokens: the host requires one by default, one check everywhere, none on a command line, and a
link's token is link data, never the bearer of a call."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.support import HostProcess, built_example, cli, cmdlines, environ_token, processes_under
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import host_pb, host_rpc, pb

pytestmark = pytest.mark.daemons


def test_the_host_makes_a_token_requires_it_and_keeps_it(tmp_path: Path) -> None:
    host = HostProcess(tmp_path)
    try:
        token_file = tmp_path / "host.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(host.token) >= 32
        with grpc.insecure_channel(host.address) as channel:
            with pytest.raises(grpc.RpcError) as info:
                host_rpc.HostStub(channel).ListLinks(host_pb.ListLinksRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "authorization" in info.value.details()
        assert host.stub.ListLinks(host_pb.ListLinksRequest()).links == []
        # The CLI finds the token in HOME/host.token with no flag.
        listed = cli(tmp_path, "link", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert host.stop() == 0
    finally:
        host.kill()
    again = HostProcess(tmp_path)
    try:
        assert again.token == host.token
        assert again.stub.ListLinks(host_pb.ListLinksRequest()).links == []
        assert again.stop() == 0
    finally:
        again.kill()


def test_more_than_one_authorization_header_is_refused_by_host_and_provider(tmp_path: Path) -> None:
    (tmp_path / "h").mkdir()
    host = HostProcess(tmp_path / "h")
    try:
        good, bad = ("authorization", f"Bearer {host.token}"), ("authorization", "Bearer wrong")
        with grpc.insecure_channel(host.address) as channel:
            stub = host_rpc.HostStub(channel)
            for metadata in ((bad, good), (good, bad), (good, good)):
                with pytest.raises(grpc.RpcError) as info:
                    stub.ListLinks(host_pb.ListLinksRequest(), metadata=metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "2 authorization headers: send exactly one" in info.value.details()
            assert stub.ListLinks(host_pb.ListLinksRequest(), metadata=(good,)).links == []
        assert host.stop() == 0
    finally:
        host.kill()
    with ProviderDaemon("gensyn", state_dir=tmp_path / "p", token="pr0vider") as daemon:
        good, bad = ("authorization", "Bearer pr0vider"), ("authorization", "Bearer wrong")
        for metadata in ((good, bad), (bad, good)):
            with pytest.raises(grpc.RpcError) as info:
                daemon.stub.Capabilities(pb.CapabilitiesRequest(), metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "2 authorization headers" in info.value.details()
        assert daemon.stub.Capabilities(pb.CapabilitiesRequest(), metadata=(good,)).trit == -1


def test_a_links_token_is_link_data_not_the_bearer_of_its_calls(tmp_path: Path) -> None:
    wasm = built_example("caller")
    host = HostProcess(tmp_path)
    try:
        put = cli(tmp_path, "link", "put", "generator=modal", "--source", "caller", "--set", "token=link-t0ken")
        assert put.returncode == 0, put.stderr
        info = host.stub.LoadComponent(host_pb.LoadComponentRequest(path=str(wasm)))
        events = list(host.stub.Invoke(host_pb.InvokeRequest(component_id=info.component_id, verse_id=5,
                                                             args=json.dumps({"instance_id": "", "calls": 2}))))
        outcome = events[-1].outcome
        assert outcome.ok, outcome.value
        assert [e.call.error for e in events if e.HasField("call")] == ["", ""]
        assert host.stop() == 0
    finally:
        host.kill()


def test_no_token_is_on_any_daemons_command_line(tmp_path: Path) -> None:
    with ProviderDaemon("gensyn", state_dir=tmp_path / "p", token="cmdline-s3cret") as daemon:
        assert daemon.proc is not None
        assert b"cmdline-s3cret" not in Path(f"/proc/{daemon.proc.pid}/cmdline").read_bytes()
        assert environ_token(daemon.proc.pid) == "cmdline-s3cret"
    (tmp_path / "h").mkdir()
    host = HostProcess(tmp_path / "h")
    try:
        state = host.stub.ProviderStatus(host_pb.ProviderStatusRequest(provider_id="gensyn"))
        provider_token = environ_token(state.pid)
        assert provider_token and provider_token != host.token
        lines = cmdlines(processes_under(str(tmp_path / "h")) | {host.proc.pid})
        assert host.proc.pid in lines and state.pid in lines
        for pid, line in lines.items():
            assert host.token.encode() not in line and provider_token.encode() not in line, (pid, line)
        assert host.stop() == 0
    finally:
        host.kill()


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**{k: v for k, v in os.environ.items() if k != "WORLDRT_TOKEN"},
                                           **(env or {})})


def test_tokens_come_from_a_private_file_or_the_environment_never_a_flag(tmp_path: Path) -> None:
    for command in (("provider", "serve", "gensyn", "--state-dir", str(tmp_path)), ("host", "serve", "--home",
                                                                                    str(tmp_path))):
        out = _serve(*command, "--token", "s3cret")
        assert out.returncode == 2 and "--token is gone" in out.stderr and "--token-file" in out.stderr
    loose = tmp_path / "loose.token"
    loose.write_text("s3cret\n")
    loose.chmod(0o644)
    out = _serve("provider", "serve", "gensyn", "--token-file", str(loose), "--state-dir", str(tmp_path / "p"))
    assert out.returncode == 5 and out.stderr.count("\n") == 1
    assert f"token file {loose} is readable by others (mode 0644): chmod 600 {loose}" in out.stderr
    private = tmp_path / "private.token"
    private.write_text("fr0m-file\n")
    private.chmod(0o600)
    with ProviderDaemon("gensyn", state_dir=tmp_path / "f", serve_args=("--token-file", str(private))) as daemon:
        with pytest.raises(grpc.RpcError) as info:
            daemon.stub.Capabilities(pb.CapabilitiesRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert daemon.stub.Capabilities(pb.CapabilitiesRequest(),
                                        metadata=(("authorization", "Bearer fr0m-file"),)).trit == -1
