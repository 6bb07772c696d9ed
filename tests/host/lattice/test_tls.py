"""TLS for TCP listeners: certificates from ``worldrt tls init``, TLS and mutual TLS on a real daemon and
host, and no bearer token in cleartext off loopback (refused before anything is sent).

Refusals use 198.18.0.1 (the benchmarking range, RFC 2544): nothing is ever sent there.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support import HostProcess
from worldrt.host.routing import DirectRouter
from worldrt.providers import ClientTls, InsecureChannelError, open_channel
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb, rpc

pytestmark = pytest.mark.daemons

UNREACHABLE = "198.18.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worldrt(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WORLDRT_TOKEN", "WORLDRT_TLS"))}
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**base, **(env or {})})


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls") / "lattice"
    made = _worldrt("tls", "init", str(directory), "--host", "localhost,m2", "--ip", "127.0.0.1", "--ip", "m2=10.1.2.3",
                    "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["ca_made"] is True
    return directory


def _capabilities(address: str, tls: ClientTls | None, token: str = "t0ken") -> pb.CapabilitiesReply:
    with open_channel(address, tls=tls, token=token) as channel:
        return rpc.WorldRuntimeStub(channel).Capabilities(pb.CapabilitiesRequest(), timeout=5,
                                                          metadata=(("authorization", f"Bearer {token}"),))


def test_tls_init_makes_a_ca_and_a_private_key_and_certificate_per_host(certs: Path) -> None:
    for name in ("ca.key", "localhost.key", "m2.key"):
        assert stat.S_IMODE((certs / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(certs.stat().st_mode) == 0o700
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    for name, ips in (("localhost", ["127.0.0.1"]), ("m2", ["127.0.0.1", "10.1.2.3"])):
        cert = x509.load_pem_x509_certificate((certs / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [name]
        assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(ip) for ip in ips]
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    again = _worldrt("tls", "init", str(certs), "--host", "m3", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["ca_made"] is False
    x509.load_pem_x509_certificate((certs / "m3.pem").read_bytes()).verify_directly_issued_by(ca)
    bad = _worldrt("tls", "init", str(certs), "--host", "m4", "--ip", "not-an-ip")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "is not an IP address" in bad.stderr


def test_a_tls_daemon_answers_clients_that_trust_its_ca_only(tmp_path: Path, certs: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    trusting = ClientTls(ca=certs / "ca.pem")
    serve = ("--tls-cert", str(certs / "localhost.pem"), "--tls-key", str(certs / "localhost.key"))
    with ProviderDaemon("gensyn", state_dir=tmp_path, token="t0ken", listen=address, serve_args=serve,
                        tls=trusting):
        assert _capabilities(address, trusting).trit == -1
        for client in (ClientTls(), None):  # the system's roots; cleartext
            with pytest.raises(grpc.RpcError) as info:
                _capabilities(address, client)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_mutual_tls_daemon_refuses_clients_without_a_certificate_its_ca_signed(tmp_path: Path, certs: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    with_cert = ClientTls(ca=certs / "ca.pem", cert=certs / "m2.pem", key=certs / "m2.key")
    serve = ("--tls-cert", str(certs / "localhost.pem"), "--tls-key", str(certs / "localhost.key"),
             "--tls-client-ca", str(certs / "ca.pem"))
    other = tmp_path / "other"
    assert _worldrt("tls", "init", str(other), "--host", "intruder").returncode == 0
    with ProviderDaemon("gensyn", state_dir=tmp_path / "p", token="t0ken", listen=address, serve_args=serve,
                        tls=with_cert):
        assert _capabilities(address, with_cert).trit == -1
        for client in (ClientTls(ca=certs / "ca.pem"),
                       ClientTls(ca=certs / "ca.pem", cert=other / "intruder.pem", key=other / "intruder.key")):
            with pytest.raises(grpc.RpcError) as info:
                _capabilities(address, client)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_token_is_never_sent_in_cleartext_off_loopback(tmp_path: Path) -> None:
    target = f"{UNREACHABLE}:50051"
    started = time.monotonic()
    with pytest.raises(InsecureChannelError) as info:
        open_channel(target, token="t0ken")
    assert "refusing to send a bearer token in cleartext" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InsecureChannelError):
        DirectRouter({"generator": target}, token="t0ken")
    out = _worldrt("providers", "list", "--host", target, "--home", str(tmp_path), env={"WORLDRT_TOKEN": "t0ken"})
    assert out.returncode == 5 and out.stderr.count("\n") == 1, out.stderr
    assert f"refusing to send a bearer token in cleartext to {target}" in out.stderr
    assert time.monotonic() - started < 30, "a refusal is immediate, never a connection attempt"
    assert not (tmp_path / "world.duckdb").exists(), "no embedded host stands in for the one asked for"
    # Loopback in cleartext is allowed: that traffic never leaves the machine.
    open_channel(f"127.0.0.1:{_free_port()}", token="t0ken").close()


def test_daemons_refuse_to_listen_off_loopback_without_tls(tmp_path: Path) -> None:
    listen = f"{UNREACHABLE}:{_free_port()}"
    with_token = _worldrt("provider", "serve", "gensyn", "--listen", listen, "--state-dir", str(tmp_path),
                          env={"WORLDRT_TOKEN": "t0ken"})
    assert with_token.returncode == 2 and with_token.stderr.count("\n") == 1, with_token.stderr
    assert f"refusing to listen on {listen} in cleartext" in with_token.stderr
    assert "--tls-cert" in with_token.stderr and "--insecure is only for a daemon without a token" in with_token.stderr
    insecure_with_token = _worldrt("provider", "serve", "gensyn", "--listen", listen, "--insecure", "--state-dir",
                                   str(tmp_path), env={"WORLDRT_TOKEN": "t0ken"})
    assert insecure_with_token.returncode == 2 and "refusing to listen" in insecure_with_token.stderr
    no_token = _worldrt("provider", "serve", "gensyn", "--listen", listen, "--state-dir", str(tmp_path))
    assert no_token.returncode == 2 and "or --insecure to serve it without TLS and without a token" in no_token.stderr
    # With --insecure and no token the refusal is lifted: what stops it now is that the address is not this host's.
    lifted = _worldrt("provider", "serve", "gensyn", "--listen", listen, "--insecure", "--state-dir", str(tmp_path))
    assert lifted.returncode == 69 and "refusing" not in lifted.stderr and f"cannot listen on {listen}" in lifted.stderr
    host = _worldrt("host", "serve", "--listen", listen, "--home", str(tmp_path / "h"))
    assert host.returncode == 2 and host.stderr.count("\n") == 1, host.stderr
    assert f"refusing to listen on {listen} in cleartext" in host.stderr


def test_the_cli_reaches_a_tls_host_with_its_ca(tmp_path: Path, certs: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    host = HostProcess(tmp_path, "--listen", address, "--tls-cert", str(certs / "localhost.pem"),
                       "--tls-key", str(certs / "localhost.key"), tls_ca=certs / "ca.pem")
    try:
        env = {"WORLDRT_TOKEN": host.token}
        by_flag = _worldrt("link", "list", "--json", "--host", address, "--tls-ca", str(certs / "ca.pem"),
                           "--home", str(tmp_path / "elsewhere"), env=env)
        assert by_flag.returncode == 0, by_flag.stderr
        assert json.loads(by_flag.stdout) == {"links": []}
        by_env = _worldrt("link", "list", "--host", address, "--home", str(tmp_path / "elsewhere"),
                          env={**env, "WORLDRT_TLS_CA": str(certs / "ca.pem")})
        assert by_env.returncode == 0, by_env.stderr
        untrusted = _worldrt("link", "list", "--host", address, "--tls-ca", str(tmp_path / "nothing.pem"),
                             "--home", str(tmp_path / "elsewhere"), env=env)
        assert untrusted.returncode == 5 and untrusted.stderr.count("\n") == 1, untrusted.stderr
        assert "cannot read the TLS CA certificate" in untrusted.stderr
        assert not (tmp_path / "elsewhere").exists(), "no embedded host stands in for the one asked for"
        assert host.stop() == 0
    finally:
        host.kill()
