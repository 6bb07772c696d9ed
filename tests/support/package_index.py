"""A package index served on loopback for image builds, the packages on it (a benign wheel, an sdist whose
build code attacks the machine), and the loopback services that code goes after.

The hostile sdist builds with an in-tree PEP 517 backend (stdlib only, so the index needs no setuptools)
that runs its ``setup.py`` first: from inside the build sandbox, as pip's build does, it connects to the
services named in ``targets`` directly and through whatever proxy pip was given, reads ``/proc/net/unix``,
and writes what it saw into the module ``<name>_report`` of the wheel it builds. The image then carries
the report; the services' own counts say what really reached them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import socket
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# setup.py of the hostile sdist: TARGETS and REPORT_MODULE are prepended.
HOSTILE_SETUP = r'''
import json, os, socket
from urllib.parse import urlsplit

report = {"tcp": {}, "abstract": {}, "unix": {}, "proxy": {}, "proc_net_unix": None,
          "env": {k: v for k, v in os.environ.items() if "proxy" in k.lower()}}

def attempt(make, address, payload=b"worldrt-attack\n", until=b""):
    s = socket.socket(*make)
    s.settimeout(3)
    try:
        s.connect(address)
        s.sendall(payload)
        seen = b""
        while until and until not in seen:  # the service's answer: what was sent was taken
            chunk = s.recv(4096)
            if not chunk:
                break
            seen += chunk
        return "connected"
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    finally:
        s.close()

for host, port, *say in TARGETS["tcp"]:
    payload, until = (say[0].encode(), say[1].encode()) if say else (b"worldrt-attack\n", b"")
    report["tcp"][f"{host}:{port}"] = attempt((socket.AF_INET, socket.SOCK_STREAM), (host, port), payload, until)
for name in TARGETS["abstract"]:
    report["abstract"][name] = attempt((socket.AF_UNIX, socket.SOCK_STREAM), "\0" + name)
for path in TARGETS["unix"]:
    report["unix"][path] = attempt((socket.AF_UNIX, socket.SOCK_STREAM), path)
try:
    with open("/proc/net/unix") as f:
        report["proc_net_unix"] = [line.split()[7] for line in f.read().splitlines()[1:] if len(line.split()) > 7]
except OSError as e:
    report["proc_net_unix"] = f"{type(e).__name__}: {e}"

proxy = next((v for k, v in sorted(os.environ.items()) if k.lower() in ("https_proxy", "http_proxy", "pip_proxy")), "")
if proxy:
    where = urlsplit(proxy)
    for line in TARGETS["proxy"]:
        s = socket.create_connection((where.hostname, where.port), timeout=5)
        try:
            s.sendall(line.encode() + b"\r\nHost: x\r\n\r\n")
            answer = s.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
            if answer.split(" ")[1:2] == ["200"] and line.startswith("CONNECT"):
                s.sendall(b"worldrt-attack through the proxy\n")
            report["proxy"][line] = answer
        except OSError as e:
            report["proxy"][line] = f"{type(e).__name__}: {e}"
        finally:
            s.close()

with open(REPORT_MODULE + ".py", "w") as f:
    f.write("REPORT = " + repr(json.dumps(report)) + "\n")
'''

# The sdist's build backend: run setup.py, then pack every top-level module into a wheel.
BACKEND = r'''
import base64, hashlib, os, runpy, zipfile

INFO = dict(line.split(": ", 1) for line in open("PKG-INFO").read().splitlines() if ": " in line)
NAME, VERSION = INFO["Name"], INFO["Version"]

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    runpy.run_path("setup.py", run_name="__main__")
    dist = f"{NAME}-{VERSION}.dist-info"
    modules = [m for m in sorted(os.listdir(".")) if m.endswith(".py") and m not in ("setup.py", "backend.py")]
    files = {m: open(m, "rb").read() for m in modules}
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: worldrt-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for p, d in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join(record + [f"{dist}/RECORD,,"]) + "\n").encode()
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return name
'''


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def wheel_bytes(name: str, version: str, modules: dict[str, str]) -> bytes:
    """A pure-Python wheel holding ``modules`` (file name → source)."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {path: source.encode() for path, source in modules.items()}
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: worldrt-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for p, d in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return out.getvalue()


def hostile_sdist(name: str, version: str, targets: dict[str, Any]) -> bytes:
    """An sdist whose build runs the hostile ``setup.py`` against ``targets`` ({"tcp": [[host, port] or
    [host, port, what to send, what the answer ends with]],
    "abstract": [name], "unix": [path], "proxy": ["CONNECT host:port HTTP/1.1", ...]})."""
    module = f"{name.replace('-', '_')}_report"
    setup = f"TARGETS = {json.dumps(targets)!r}\nTARGETS = __import__('json').loads(TARGETS)\n" \
            f"REPORT_MODULE = {module!r}\n" + HOSTILE_SETUP
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": BACKEND,
        "setup.py": setup,
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class LocalIndex:
    """A PEP 503 simple index on ``127.0.0.1`` (``url``), serving the files ``add`` puts in ``root``; it
    records the paths it was asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        (root / "simple").mkdir(parents=True, exist_ok=True)
        (root / "packages").mkdir(exist_ok=True)
        index = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                index.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/simple"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, project: str, filename: str, data: bytes) -> None:
        (self.root / "packages" / filename).write_bytes(data)
        page = self.root / "simple" / _normalized(project)
        page.mkdir(exist_ok=True)
        links = [f'<a href="/packages/{html.escape(f.name)}#sha256={hashlib.sha256(f.read_bytes()).hexdigest()}">'
                 f"{html.escape(f.name)}</a><br>" for f in sorted((self.root / "packages").iterdir())
                 if _normalized(f.name.split("-")[0]) == _normalized(project)]
        (page / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")

    def add_wheel(self, name: str, version: str, modules: dict[str, str]) -> None:
        self.add(name, f"{name.replace('-', '_')}-{version}-py3-none-any.whl", wheel_bytes(name, version, modules))

    def add_hostile(self, name: str, version: str, targets: dict[str, Any]) -> None:
        self.add(name, f"{name}-{version}.tar.gz", hostile_sdist(name, version, targets))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


class Bait:
    """Services of the machine a build must never reach: a TCP port on loopback, an abstract unix socket
    and a unix socket at a path (under ``folder``). Each counts the connections it accepted and what
    they sent."""

    def __init__(self, folder: Path) -> None:
        tag = os.urandom(4).hex()
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.abstract_name = f"worldrt-bait-{tag}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(16)
        self.path = str(folder / f"bait-{tag}.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.path)
        os.chmod(self.path, 0o777)
        self.unix.listen(16)
        self.port = self.tcp.getsockname()[1]
        self.reached: dict[str, list[bytes]] = {"tcp": [], "abstract": [], "unix": []}
        self._threads = [threading.Thread(target=self._accept, args=(kind, sock), daemon=True)
                         for kind, sock in (("tcp", self.tcp), ("abstract", self.abstract), ("unix", self.unix))]

    def _accept(self, kind: str, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.reached[kind].append(conn.recv(4096))
                except OSError:
                    self.reached[kind].append(b"")

    def count(self) -> int:
        return sum(len(v) for v in self.reached.values())

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sock in (self.tcp, self.abstract, self.unix):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(5)
        Path(self.path).unlink(missing_ok=True)
