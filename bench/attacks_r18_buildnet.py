"""Issue 18, finding 13: what a package's build code can reach from an image build's sandbox.

    .venv/bin/python bench/attacks_r18_buildnet.py

A real morph daemon builds, from a package index served on loopback, a package whose ``setup.py`` (run by
pip inside the build sandbox, as the build's uid) attacks the machine: a TCP service on loopback, a real
nats-server on loopback (it publishes, as finding 2's ``Shutdown`` went out), an abstract and a path unix
socket, the daemon's own socket, ``/proc/net/unix``, a host other than the index, and the same through
whatever proxy pip was given. A second build names the loopback index by another spelling of its address.
Each service counts what reached it; the package's report comes back in the image it built.

Needs ``tests/support/package_index.py`` (standard library only) beside ``tests/support``: copy both into
an old checkout to run it there. Against code without a build proxy the proxy rows report the direct
route instead, and the attacks are not blocked.
"""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from tests.support import free_port, run
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

try:
    from tests.support.package_index import Bait, LocalIndex
except ImportError as missing:  # an old checkout: the helper is not there yet
    raise ImportError("bench/attacks_r18_buildnet.py needs tests/support/package_index.py (standard library only): "
                      "copy it into this checkout too") from missing

FINDING = "r18-13"
SUBJECT = "worldrt.r18.buildnet"
Attack = Callable[[str, str, str, Callable[[], tuple[bool, str]]], None]


def _nats_binary() -> str:
    try:
        from worldrt.host.lattice import nats_server_binary
        return str(nats_server_binary())
    except Exception:  # noqa: BLE001 - an older tree: the binary of the environment
        return str(pathlib.Path(sys.executable).parent / "nats-server")


class _Nats:
    """A nats-server on loopback and a raw subscriber to ``SUBJECT`` on it."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([_nats_binary(), "-a", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.sub = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)
        self.sub.sendall(f'CONNECT {{"verbose":false}}\r\nSUB {SUBJECT} 1\r\nPING\r\n'.encode())
        self.seen = self._read_until(b"PONG", 5)

    def _read_until(self, marker: bytes, timeout_s: float) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout_s
        while marker not in data and time.monotonic() < deadline:
            self.sub.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sub.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def published(self) -> bool:
        """Whether anything was published on ``SUBJECT`` (a bounded wait: the build is over by then)."""
        self.seen += self._read_until(f"MSG {SUBJECT}".encode(), 3)
        return f"MSG {SUBJECT}".encode() in self.seen

    def close(self) -> None:
        if getattr(self, "sub", None) is not None:
            self.sub.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _build(daemon: ProviderDaemon, name: str, index_url: str) -> tuple[pb.Image | None, str]:
    try:
        events = list(daemon.stub.BuildImage(pb.BuildImageRequest(name=name, pip=[name], index_url=index_url),
                                             timeout=300))
        return events[-1].image, ""
    except grpc.RpcError as exc:
        return None, f"{exc.code().name}: {exc.details()}"


def _report(daemon: ProviderDaemon, image: str) -> dict[str, Any]:
    iid = daemon.stub.Start(pb.StartRequest(image=image)).instance_id
    try:
        module = image.replace("-", "_") + "_report"
        return dict(json.loads(json.loads(run(daemon.stub, iid, f"import {module}\n{module}.REPORT").value_json)))
    finally:
        daemon.stub.Stop(pb.InstanceRef(instance_id=iid))


def run_attacks(attack: Attack, tmp: pathlib.Path) -> None:
    with ExitStack() as stack:
        for folder in ("bait", "spelled", "index", "nats"):
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        bait = stack.enter_context(Bait(tmp / "bait"))
        spelled = stack.enter_context(Bait(tmp / "spelled"))
        index = stack.enter_context(LocalIndex(tmp / "index"))
        nats = _Nats(tmp / "nats")
        stack.callback(nats.close)
        daemon = stack.enter_context(ProviderDaemon("morph", state_dir=tmp / "morph", options={"pool_size": "1"}))
        daemon_socket = daemon.address.removeprefix("unix:")
        nats_say = [f'CONNECT {{"verbose":false}}\r\nPUB {SUBJECT} 6\r\npwned!\r\nPING\r\n', "PONG"]
        targets = {
            "tcp": [["127.0.0.1", bait.port], ["127.0.0.1", nats.port, *nats_say], ["pypi.org", 443]],
            "abstract": [bait.abstract_name],
            "unix": [bait.path, daemon_socket],
            "proxy": [f"CONNECT 127.0.0.1:{bait.port} HTTP/1.1", f"GET http://127.0.0.1:{bait.port}/ HTTP/1.1",
                      f"CONNECT localhost:{nats.port} HTTP/1.1", "CONNECT pypi.org:443 HTTP/1.1"],
        }
        index.add_hostile("r18hostile", "1.0", targets)
        found: dict[str, Any] = {}

        def report() -> dict[str, Any]:
            if not found:
                image, error = _build(daemon, "r18hostile", index.url)
                found["report"] = _report(daemon, "r18hostile") if image is not None else {}
                found["error"] = error
            return dict(found["report"])

        def seen(kind: str, key: str) -> str:
            return str(report().get(kind, {}).get(key, f"not tried (build: {found.get('error') or 'no report'})"))

        def tcp_loopback() -> tuple[bool, str]:
            result = seen("tcp", f"127.0.0.1:{bait.port}")
            return not bait.reached["tcp"] and result != "connected", \
                f"setup.py: {result}; the service accepted {len(bait.reached['tcp'])} connection(s)"

        def nats_publish() -> tuple[bool, str]:
            result = seen("tcp", f"127.0.0.1:{nats.port}")
            got = nats.published()
            return not got and result != "connected", \
                f"setup.py: {result}; a subscriber {'got' if got else 'got no'} message on {SUBJECT}"

        def abstract() -> tuple[bool, str]:
            result = seen("abstract", bait.abstract_name)
            return not bait.reached["abstract"] and result != "connected", \
                f"setup.py: {result}; accepted {len(bait.reached['abstract'])}"

        def unix_paths() -> tuple[bool, str]:
            results = [seen("unix", p) for p in (bait.path, daemon_socket)]
            reached = [r for r in results if r == "connected"] + [b"x" for b in bait.reached["unix"]]
            return not reached, f"setup.py: {results[0][:60]} (bait), {results[1][:60]} (the daemon's socket)"

        def proc_net_unix() -> tuple[bool, str]:
            listed = report().get("proc_net_unix")
            if not isinstance(listed, list):
                return True, f"setup.py could not read it: {listed or found.get('error')}"
            leaked = [n for n in listed if n in (bait.path, daemon_socket, f"@{bait.abstract_name}")]
            return not leaked, f"{len(listed)} named sockets listed, {len(leaked)} of the host's own: {leaked[:3]}"

        def through_proxy() -> tuple[bool, str]:
            answers = report().get("proxy", {})
            if not answers:
                direct = seen("tcp", f"127.0.0.1:{bait.port}")
                return direct != "connected", f"no proxy in the build; its own network reached loopback: {direct}"
            codes = {line.split(" ")[1]: answer[:70] for line, answer in answers.items() if "pypi" not in line}
            ok = all(a.split(" ")[1:2] in (["403"], ["405"]) for a in codes.values()) and not bait.reached["tcp"]
            return ok, "; ".join(f"{k} -> {v}" for k, v in codes.items())

        def other_host() -> tuple[bool, str]:
            direct = seen("tcp", "pypi.org:443")
            via = report().get("proxy", {}).get("CONNECT pypi.org:443 HTTP/1.1", "no proxy")
            return direct != "connected" and not via.startswith("HTTP/1.1 200"), \
                f"directly: {direct[:70]}; through the proxy: {via[:90]}"

        def spelled_loopback() -> tuple[bool, str]:
            _, error = _build(daemon, "benign", f"https://2130706433:{spelled.port}/simple")
            reached = len(spelled.reached["tcp"])
            return reached == 0, f"build: {error[:160] or 'built'}; the loopback port accepted {reached} connection(s)"

        attack(FINDING, "a package's setup.py connects to a TCP service on the host's loopback",
               "refused: the build sandbox's loopback is its own", tcp_loopback)
        attack(FINDING, "setup.py publishes on the lattice's nats-server on loopback (finding 2's way in)",
               "refused: no connection, nothing published", nats_publish)
        attack(FINDING, "setup.py connects to an abstract unix socket of the host",
               "refused: abstract sockets are per network namespace", abstract)
        attack(FINDING, "setup.py connects to unix sockets at host paths (a service's, the daemon's own)",
               "not found: those folders are not in the build sandbox", unix_paths)
        attack(FINDING, "setup.py reads /proc/net/unix for the host's socket paths",
               "only the build sandbox's own namespace's sockets (none of the host's)", proc_net_unix)
        attack(FINDING, "setup.py asks the build's proxy for loopback ports (CONNECT, absolute GET)",
               "403: the proxy reaches the package index's host:port only", through_proxy)
        attack(FINDING, "setup.py reaches a host other than its index (pypi.org:443), directly or by proxy",
               "refused: no route out, and the proxy answers 403", other_host)
        attack(FINDING, "an index URL spelling loopback another way (https://2130706433:PORT)",
               "FAILED_PRECONDITION: resolved to this machine, and nothing reaches the port", spelled_loopback)


if __name__ == "__main__":
    import tempfile

    def _print(finding: str, what: str, expected: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            blocked, observed = fn()
        except Exception as exc:  # noqa: BLE001 - a row, not a crash
            blocked, observed = False, f"the attack ended unexpectedly: {type(exc).__name__}: {exc}"
        print(f"{finding} {'BLOCKED' if blocked else 'NOT BLOCKED'} | {what} | expected: {expected} | {observed}")

    with tempfile.TemporaryDirectory(prefix="worldrt-r18-buildnet-") as folder:
        run_attacks(_print, pathlib.Path(folder))
