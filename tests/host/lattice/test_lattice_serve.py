"""`worldrt lattice serve` on loopback: a JetStream nats-server as a supervised child that stops with its
parent, and the one-line errors of a wrong credential or a lattice that is not there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import cmdlines, processes_under, wait_for, wait_gone
from worldrt.errors import Unauthenticated
from worldrt.host.lattice import Lattice, LatticeError, LatticeOptions

pytestmark = pytest.mark.daemons
TOKEN = "loopback-lattice-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worldrt(*args: str, env: dict[str, str], cwd: Path, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDRT_LATTICE")}
    return {**env, **extra}


class Served:
    def __init__(self, root: Path) -> None:
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = root / "store"
        self.proc = _worldrt("lattice", "serve", "--listen", f"127.0.0.1:{self.port}", "--store", str(self.store),
                             env=_env(WORLDRT_LATTICE_TOKEN=TOKEN), cwd=root)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "lattice serving on" in line, line + self.proc.stdout.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("lattice"))
    yield server
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], env=env, cwd=cwd, text=True,
                          capture_output=True, timeout=60)


def test_jetstream_works_and_the_token_is_in_no_command_line(served: Served) -> None:
    lattice = Lattice(LatticeOptions(served.url, token=TOKEN))
    try:
        async def roundtrip() -> bytes:
            kv = await lattice.js.create_key_value(bucket="PROBE")
            await kv.put("k", b"v")
            return (await kv.get("k")).value or b""

        assert lattice.run(roundtrip()) == b"v"
    finally:
        lattice.close()
    running = cmdlines(processes_under(str(served.store)))
    assert running and all(TOKEN.encode() not in line for line in running.values()), running
    assert oct((served.store / "nats-server.conf").stat().st_mode & 0o777) == "0o600"


def test_a_wrong_token_is_a_one_line_error(served: Served, tmp_path: Path) -> None:
    done = _cli("lattice", "status", "--lattice", served.url, env=_env(WORLDRT_LATTICE_TOKEN="wrong"), cwd=tmp_path)
    assert done.returncode == 8  # Unauthenticated: a wrong token is not "try again"
    assert done.stderr.count("\n") == 1 and "refused our credentials" in done.stderr, done.stderr
    with pytest.raises(LatticeError, match="refused our credentials") as info:
        Lattice(LatticeOptions(served.url))
    assert isinstance(info.value, Unauthenticated)


def test_no_lattice_at_the_address_is_a_one_line_error(tmp_path: Path) -> None:
    done = _cli("lattice", "status", "--lattice", f"nats://127.0.0.1:{_free_port()}", env=_env(), cwd=tmp_path)
    assert done.returncode == 69
    assert done.stderr.count("\n") == 1 and "no lattice answers" in done.stderr, done.stderr


def test_status_of_an_empty_lattice(served: Served, tmp_path: Path) -> None:
    done = _cli("lattice", "status", "--json", env=_env(WORLDRT_LATTICE=served.url, WORLDRT_LATTICE_TOKEN=TOKEN),
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"hosts": []' in done.stdout and '"links": []' in done.stdout


def test_sigterm_stops_the_server_and_sigkill_takes_it_along(tmp_path: Path) -> None:
    for signum, code in ((signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)):
        (tmp_path / signum.name).mkdir()
        server = Served(tmp_path / signum.name)
        tree = processes_under(str(server.store))
        assert len(tree) == 2  # worldrt and its nats-server
        server.proc.send_signal(signum)
        assert server.proc.wait(30) == code
        wait_gone(tree)
        wait_for(lambda: not processes_under(str(server.store)), 10, "no nats-server left")


def test_a_lattice_with_tls_takes_its_ca_and_refuses_without_it(tmp_path: Path) -> None:
    from worldrt.host.routing import init_tls

    issued = init_tls(tmp_path / "certs", ["hub"], ["127.0.0.1"])
    cert, key, _ = issued.hosts["hub"]
    port = _free_port()
    proc = _worldrt("lattice", "serve", "--listen", f"127.0.0.1:{port}", "--store", str(tmp_path / "store"),
                    "--tls-cert", str(cert), "--tls-key", str(key), env=_env(WORLDRT_LATTICE_TOKEN=TOKEN), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        assert "lattice serving on tls://" in proc.stdout.readline()
        url = f"tls://127.0.0.1:{port}"
        lattice = Lattice(LatticeOptions(url, token=TOKEN, tls_ca=str(issued.ca_cert)))
        lattice.close()
        done = _cli("lattice", "status", "--lattice", url, env=_env(WORLDRT_LATTICE_TOKEN=TOKEN), cwd=tmp_path)
        assert done.returncode == 69 and done.stderr.count("\n") == 1, done.stderr
        assert "--lattice-tls-ca" in done.stderr or "TLS" in done.stderr, done.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
