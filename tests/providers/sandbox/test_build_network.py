"""An image build's network: a namespace of its own whose only way out is the daemon's proxy to the build's
package index (issue 18, finding 13).

The daemon tests build from a package index served on loopback by the test. One package's build code
(its ``setup.py``, run by pip inside the build sandbox) goes after services of the machine: a TCP port
on loopback, an abstract and a path unix socket, the daemon's own socket, the same through the proxy
pip was given, and ``/proc/net/unix``. None may be reached, and the build of a benign package from the
same index still works. The proxy tests drive the daemon's proxy directly over its unix socket.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.support import processes_under, run, wait_for
from tests.support.package_index import Bait, LocalIndex
from worldrt.errors import FailedPrecondition
from worldrt.providers.sandbox import _index_proxy
from worldrt.providers.sandbox._index_proxy import Endpoint, IndexProxy, endpoints, may_connect
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

BIG = 1 << 20


@pytest.fixture(scope="module")
def bait(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bait]:
    with Bait(tmp_path_factory.mktemp("bait")) as services:
        yield services


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    with LocalIndex(tmp_path_factory.mktemp("index")) as served:
        served.add_wheel("benign", "1.0", {"benign.py": "VALUE = 42\n"})
        (served.root / "packages" / "big.bin").write_bytes(os.urandom(BIG))
        yield served


def _build(stub: Any, **fields: Any) -> pb.Image:
    return list(stub.BuildImage(pb.BuildImageRequest(**fields), timeout=300))[-1].image


def _proxy_sockets(pid: int) -> list[str]:
    """Paths of the unix sockets of the daemon ``pid`` that are an index proxy's."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/unix") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    return [row[7] for row in rows if len(row) > 7 and row[6] in inodes and "worldrt-build-net-" in row[7]]


# against a real daemon ---------------------------------------------------------------------------------
@pytest.mark.daemons
def test_a_package_s_build_code_reaches_no_service_of_the_machine(stub: Any, morph: ProviderDaemon, bait: Bait,
                                                                  index: LocalIndex) -> None:
    daemon_socket = morph.address.removeprefix("unix:")
    targets: dict[str, list[Any]] = {
        "tcp": [["127.0.0.1", bait.port]],
        "abstract": [bait.abstract_name],
        "unix": [bait.path, daemon_socket],
        "proxy": [f"CONNECT 127.0.0.1:{bait.port} HTTP/1.1", f"GET http://127.0.0.1:{bait.port}/ HTTP/1.1",
                  f"CONNECT [::1]:{bait.port} HTTP/1.1", f"CONNECT localhost:{index.port} HTTP/1.1",
                  f"CONNECT 127.0.0.1:{index.port} HTTP/1.1", "CONNECT pypi.org:443 HTTP/1.1",
                  f"POST http://127.0.0.1:{index.port}/simple/ HTTP/1.1"],
    }
    index.add_hostile("hostile", "1.0", targets)
    image = _build(stub, name="hostile", pip=["hostile"], index_url=index.url)
    assert list(image.packages) == ["hostile==1.0"]  # the attacks failed, the build went on
    iid = stub.Start(pb.StartRequest(image="hostile")).instance_id
    try:
        report = json.loads(json.loads(run(stub, iid, "import hostile_report\nhostile_report.REPORT").value_json))
    finally:
        stub.Stop(pb.InstanceRef(instance_id=iid))
    direct = {**report["tcp"], **report["abstract"], **report["unix"]}
    assert len(direct) == 4 and not [t for t, seen in direct.items() if seen == "connected"], direct
    assert bait.reached == {"tcp": [], "abstract": [], "unix": []}
    # The sandbox's /proc/net is its own network namespace's: no socket of the host is listed.
    assert report["proc_net_unix"] == [], report["proc_net_unix"]
    assert set(report["proxy"]) == set(targets["proxy"])
    refused = {line: answer.split(" ")[1] for line, answer in report["proxy"].items()}
    assert refused == {line: "405" if line.startswith("POST") else "403" for line in targets["proxy"]}, report["proxy"]
    assert "is not this build's package index" in report["proxy"][targets["proxy"][0]]


@pytest.mark.daemons
def test_a_benign_build_from_the_local_index_works_and_its_network_ends_with_it(stub: Any, morph: ProviderDaemon,
                                                                               index: LocalIndex) -> None:
    assert morph.proc is not None
    before = len(index.requests)
    image = _build(stub, name="netbenign", pip=["benign"], index_url=index.url)
    assert list(image.packages) == ["benign==1.0"]
    assert "/simple/benign/" in index.requests[before:]
    iid = stub.Start(pb.StartRequest(image="netbenign")).instance_id
    try:
        assert run(stub, iid, "import benign\nbenign.VALUE").value_json == "42"
    finally:
        stub.Stop(pb.InstanceRef(instance_id=iid))
    # The proxy ended with the build: no socket of it in the daemon, no process of the build's sandbox.
    pid = morph.proc.pid
    wait_for(lambda: not _proxy_sockets(pid), 10, "the build's proxy socket closed")
    wait_for(lambda: not processes_under("build netbenign]"), 10, "the build's sandbox (and forwarder) ended")


@pytest.mark.daemons
def test_an_index_named_by_another_spelling_of_loopback_is_refused(stub: Any, index: LocalIndex) -> None:
    """2130706433 is 127.0.0.1 to the resolver: the index URL does not name loopback, so the proxy refuses
    it after resolving, and nothing reaches the index."""
    before = len(index.requests)
    with pytest.raises(grpc.RpcError) as info:
        _build(stub, name="sneaky", pip=["benign"], index_url=f"https://2130706433:{index.port}/simple")
    details = str(info.value.details())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, details
    assert "address of this machine" in details and "2130706433" in details
    assert index.requests[before:] == []


# the proxy itself ----------------------------------------------------------------------------------------
def _ask(proxy: IndexProxy, data: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Send ``data`` to the proxy and read its answer until it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(proxy.socket_path))
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture()
def started() -> Iterator[list[IndexProxy]]:
    proxies: list[IndexProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.stop()


def _start(started: list[IndexProxy], url: str, **caps: Any) -> IndexProxy:
    proxy = IndexProxy(url, os.getuid(), byte_cap=caps.pop("byte_cap", 64 << 20), **caps)
    started.append(proxy)
    proxy.start()
    return proxy


@pytest.mark.pure
def test_what_a_build_may_reach_is_its_index_s_host_and_port() -> None:
    assert endpoints("https://pypi.org/simple") == (Endpoint("https", "pypi.org", 443),
                                                    Endpoint("https", "files.pythonhosted.org", 443))
    assert endpoints("http://127.0.0.1:8080/simple/") == (Endpoint("http", "127.0.0.1", 8080),)
    assert endpoints("https://Mirror.Example:8443/pypi") == (Endpoint("https", "mirror.example", 8443),)
    assert endpoints("http://[::1]/simple") == (Endpoint("http", "::1", 80),)
    assert endpoints("file:///srv/index") == () and endpoints("http://host:99999/") == ()
    named = Endpoint("https", "pypi.org", 443)
    for address in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "0.0.0.0", "169.254.169.254", "fe80::1"):
        assert not may_connect(named, _ip(address)), address
    assert may_connect(named, _ip("151.101.0.223")) and may_connect(named, _ip("198.51.100.7"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # this machine's own address (no packet sent)
        try:
            probe.connect(("198.51.100.7", 9))
            own = probe.getsockname()[0]
        except OSError:
            own = "127.0.0.1"  # no route out: loopback is this machine's only address
    assert not may_connect(named, _ip(own)), own
    assert may_connect(Endpoint("http", "127.0.0.1", 80), _ip("127.0.0.1"))
    assert not may_connect(Endpoint("http", "127.0.0.1", 80), _ip("127.0.0.2"))
    assert may_connect(Endpoint("http", "localhost", 80), _ip("::1"))
    assert not may_connect(Endpoint("http", "2130706433", 80), _ip("127.0.0.1"))


def _ip(text: str) -> Any:
    import ipaddress
    return ipaddress.ip_address(text)


@pytest.mark.pure
def test_the_proxy_forwards_reads_of_its_index_and_refuses_everything_else(index: LocalIndex, bait: Bait,
                                                                            started: list[IndexProxy]) -> None:
    proxy = _start(started, index.url)
    page = _ask(proxy, f"GET http://127.0.0.1:{index.port}/simple/benign/ HTTP/1.1\r\nHost: x\r\n"
                       f"Proxy-Connection: keep-alive\r\n\r\n".encode())
    assert _status(page) == 200 and b"benign-1.0-py3-none-any.whl" in page and b"\r\nConnection: close\r\n" in page
    refusals = {
        f"GET http://127.0.0.1:{bait.port}/ HTTP/1.1": 403,
        f"GET http://localhost:{index.port}/simple/ HTTP/1.1": 403,
        f"CONNECT 127.0.0.1:{index.port} HTTP/1.1": 403,  # an http index is not reached by tunnel
        f"CONNECT 127.0.0.1:{bait.port} HTTP/1.1": 403,
        f"POST http://127.0.0.1:{index.port}/simple/ HTTP/1.1": 405,
        "GET /simple/ HTTP/1.1": 400,
        "CONNECT 127.0.0.1 HTTP/1.1": 400,
        "SSH-2.0-OpenSSH": 400,
    }
    for line, code in refusals.items():
        answer = _ask(proxy, f"{line}\r\nHost: x\r\n\r\n".encode())
        assert _status(answer) == code, (line, answer)
    with_body = f"GET http://127.0.0.1:{index.port}/simple/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".encode()
    assert _status(_ask(proxy, with_body)) == 400
    assert _status(_ask(proxy, b"GET http://x/ HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")) == 431
    assert bait.reached == {"tcp": [], "abstract": [], "unix": []}
    assert any("is not this build's package index" in note for note in proxy.notes())


@pytest.mark.pure
def test_a_name_that_resolves_to_this_machine_is_refused_after_resolution(index: LocalIndex,
                                                                           started: list[IndexProxy]) -> None:
    proxy = _start(started, f"http://2130706433:{index.port}/simple")
    before = len(index.requests)
    answer = _ask(proxy, f"GET http://2130706433:{index.port}/simple/benign/ HTTP/1.1\r\n\r\n".encode())
    assert _status(answer) == 403 and b"resolves to 127.0.0.1" in answer
    assert index.requests[before:] == []
    failure = proxy.failure("x")
    assert isinstance(failure, FailedPrecondition) and "names that address itself" in str(failure)


@pytest.mark.pure
def test_an_unreachable_index_answers_502_with_the_reason(started: list[IndexProxy]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # free once closed: nothing listens there
    proxy = _start(started, f"http://127.0.0.1:{port}/simple")
    answer = _ask(proxy, f"GET http://127.0.0.1:{port}/simple/x/ HTTP/1.1\r\n\r\n".encode())
    assert _status(answer) == 502 and b"Failed to establish a new connection" in answer
    assert any("Failed to establish a new connection" in note for note in proxy.notes())


@pytest.mark.pure
def test_connections_heads_idle_tunnels_and_bytes_are_capped(index: LocalIndex, started: list[IndexProxy]) -> None:
    # An https index on the test's port: the proxy tunnels bytes, whatever they are.
    proxy = _start(started, f"https://127.0.0.1:{index.port}/simple", max_connections=2, idle_s=0.5, head_s=0.5,
                   byte_cap=BIG // 2)
    connect = f"CONNECT 127.0.0.1:{index.port} HTTP/1.1\r\n\r\n".encode()
    quiet = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    try:
        for sock in quiet:
            sock.connect(str(proxy.socket_path))
            sock.sendall(connect)
            assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
        assert _status(_ask(proxy, connect)) == 503  # a third connection while two are open
        for sock in quiet:  # idle both ways: closed by the proxy
            sock.settimeout(10)
            assert sock.recv(100) == b""
    finally:
        for sock in quiet:
            sock.close()
    wait_for(lambda: proxy._active == 0, 10, "the proxy counted its closed connections")
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with slow:  # a head that never ends is dropped
        slow.settimeout(10)
        slow.connect(str(proxy.socket_path))
        slow.sendall(b"CONNECT 127.0.0.1:")
        assert slow.recv(100) == b""
    got = _ask(proxy, connect + b"GET /packages/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 Connection established") and len(got) < BIG // 2 + 65536
    refused = _ask(proxy, connect)
    assert _status(refused) == 403 and b"network cap" in refused


@pytest.mark.pure
def test_stop_closes_every_connection_and_removes_the_socket(index: LocalIndex, started: list[IndexProxy]) -> None:
    proxy = _start(started, f"https://127.0.0.1:{index.port}/simple")
    folder = proxy.socket_path.parent
    assert folder.stat().st_mode & 0o777 == 0o700 and proxy.socket_path.stat().st_mode & 0o777 == 0o600
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as tunnel:
        tunnel.settimeout(10)
        tunnel.connect(str(proxy.socket_path))
        tunnel.sendall(f"CONNECT 127.0.0.1:{index.port} HTTP/1.1\r\n\r\n".encode())
        assert tunnel.recv(100).startswith(b"HTTP/1.1 200 ")
        proxy.stop()
        assert tunnel.recv(100) == b""
    assert not folder.exists()
    assert proxy._thread is not None and not proxy._thread.is_alive()
    assert _index_proxy.SOCKET_MOUNT.startswith("/run/")
