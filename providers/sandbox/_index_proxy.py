"""The only way out of an image build's sandbox: an HTTP proxy the daemon runs for one build, to its
package index and nothing else.

The build sandbox gets a network namespace of its own (``--unshare-net``: its own loopback, no route
out, no abstract socket or ``/proc/net`` entry of the host). The daemon runs this proxy on a unix
socket in a folder only root can enter, bound into the sandbox at ``SOCKET_MOUNT``; inside,
``_forwarder`` relays pip's TCP connections to it from the sandbox's own ``127.0.0.1:PROXY_PORT``.

Invariants:

* Only the index's own ``host:port`` is reached (for PyPI also its file host), as the index URL names
  it: ``CONNECT`` for an https index, absolute-URI ``GET``/``HEAD`` forwarding for an http one.
  Everything else is answered 403 with the reason, and never resolved or connected to.
* The allowed host is resolved by the proxy and checked after resolution: an address of this machine
  (loopback, unspecified, one of its interfaces) or a link-local or multicast one is reached only when
  the index URL names that very address (``localhost`` names loopback). The proxy connects to the
  address it checked, never to a name resolved again.
* Everything is bounded: concurrent connections, the request head and the time to send it, the time
  to connect, idle tunnels, and the bytes of the whole build in both directions.
* It lives exactly as long as the build: ``stop`` closes every connection, ends its thread and removes
  its folder.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from worldrt import errors as err
from worldrt.providers.sandbox import _bwrap

log = logging.getLogger(__name__)

PROXY_PORT = 3128
SOCKET_MOUNT = "/run/worldrt/index.sock"
FORWARDER_MOUNT = "/opt/worldrt-forwarder.py"
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
# An index whose files live on another host: the file host is part of the index.
FILE_HOSTS = {"pypi.org": ("files.pythonhosted.org", 443), "test.pypi.org": ("test-files.pythonhosted.org", 443)}
MAX_CONNECTIONS = 32
HEAD_LIMIT = 16 * 1024
HEAD_S = 10.0
CONNECT_S = 20.0
IDLE_S = 60.0
CHUNK = 1 << 16
MAX_NOTES = 20
_FORWARDER = Path(__file__).resolve().parent / "_forwarder.py"
_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
                          "te", "trailer", "upgrade", "host"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Endpoint:
    """One ``host:port`` a build may reach, and how: ``https`` through a CONNECT tunnel, ``http`` by
    forwarding absolute-URI requests."""
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"


def endpoints(index_url: str) -> tuple[Endpoint, ...]:
    """What a build from ``index_url`` may reach: the index's own host and port, and PyPI's file host for
    PyPI. An index that is not http(s) (a ``file:`` URL) reaches nothing."""
    url = urlsplit(index_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        return ()
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return ()
    found = [Endpoint(url.scheme, url.hostname.lower(), port)]
    if url.hostname.lower() in FILE_HOSTS:
        host, file_port = FILE_HOSTS[url.hostname.lower()]
        found.append(Endpoint("https", host, file_port))
    return tuple(found)


def _nonlocal_bind() -> bool:
    for family in ("ipv4", "ipv6"):
        try:
            if Path(f"/proc/sys/net/{family}/ip_nonlocal_bind").read_text().strip() != "0":
                return True
        except OSError:
            continue
    return False


def _of_this_machine(address: Address) -> bool:
    """Whether ``address`` is one of this machine's own: binding to it works only then (unless the
    machine allows binding to any address, when only loopback and unspecified count)."""
    if address.is_loopback or address.is_unspecified:
        return True
    if _nonlocal_bind():
        return False
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def may_connect(endpoint: Endpoint, address: Address) -> bool:
    """Whether a build may connect to ``address``, one ``endpoint.host`` resolved to: any public or
    private address of another machine; an address of this machine, a link-local or a multicast one only
    when the index URL names that address itself (``localhost`` names loopback)."""
    address = unmapped(address)
    if not (address.is_link_local or address.is_multicast or _of_this_machine(address)):
        return True
    if endpoint.host == "localhost":
        return address.is_loopback
    try:
        return unmapped(ipaddress.ip_address(endpoint.host)) == address
    except ValueError:
        return False


def _clean(text: str, limit: int = 300) -> str:
    """One printable line (a reason phrase or a note): nothing the sandbox sent can break a header."""
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in text)[:limit]


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, _clean(reason)


class _Tunnel:
    def __init__(self) -> None:
        self.last = time.monotonic()


class IndexProxy:
    """The network of one build: ``confine`` starts the proxy and turns the build's bwrap argv into one
    with a network namespace of its own and the forwarder in front; ``stop`` ends it (always call it)."""

    def __init__(self, index_url: str, uid: int, *, byte_cap: int, max_connections: int = MAX_CONNECTIONS,
                 idle_s: float = IDLE_S, connect_s: float = CONNECT_S, head_s: float = HEAD_S) -> None:
        self.index_url, self.uid, self.byte_cap = index_url, uid, byte_cap
        self.allowed = endpoints(index_url)
        self.max_connections, self.idle_s, self.connect_s, self.head_s = max_connections, idle_s, connect_s, head_s
        self.fds: list[int] = []
        self.folder: Path | None = None
        self.bytes = 0
        self.index_refused = ""
        self._notes: list[str] = []
        self._active = self._refusing = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # the daemon's side --------------------------------------------------------------------------------
    @property
    def socket_path(self) -> Path:
        if self.folder is None:
            raise RuntimeError("the index proxy is not started")
        return self.folder / "index.sock"

    def start(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="worldrt-build-net-"))  # 0700, root's: no sandbox reaches it
        self._loop, self._stopping = asyncio.new_event_loop(), asyncio.Event()
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(started, failure), name="worldrt-index-proxy",
                                        daemon=True)
        self._thread.start()
        if not started.wait(10) or failure:
            self.stop()
            raise err.Unavailable(f"the build's index proxy could not start: {failure[0] if failure else 'timeout'}")

    def confine(self, argv: list[str]) -> list[str]:
        """The build's bwrap ``argv`` with its own network namespace, the proxy's socket and the forwarder
        bound in, pip told to use the proxy, and the forwarder run first (it execs the build's command)."""
        self.start()
        forwarder = _bwrap.memfd("forwarder.py", _FORWARDER.read_bytes())
        self.fds.append(forwarder)
        cut = argv.index("--")
        network = ["--unshare-net", "--perms", "0755", "--dir", "/run", "--perms", "0755", "--dir", "/run/worldrt",
                   "--ro-bind", str(self.socket_path), SOCKET_MOUNT,
                   "--perms", "0444", "--ro-bind-data", str(forwarder), FORWARDER_MOUNT]
        for name in ("PIP_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            network += ["--setenv", name, PROXY_URL]
        front = [_bwrap.base_interpreter(), "-I", "-S", FORWARDER_MOUNT, SOCKET_MOUNT, str(PROXY_PORT), str(self.uid),
                 "--"]
        return argv[:cut] + network + ["--"] + front + argv[cut + 1:]

    def notes(self) -> list[str]:
        """What the proxy refused or could not reach, one line each (for the build's error)."""
        with self._lock:
            return list(self._notes)

    def failure(self, name: str) -> err.WorldError | None:
        """Why the build of ``name`` could not reach its index at all, when that was this proxy's doing."""
        if not self.index_refused:
            return None
        return err.FailedPrecondition(
            f"the build of {name} may not reach its index: {self.index_refused}, an address of this machine (or a "
            f"link-local one), which a build reaches only when the index URL names that address itself "
            f"(like http://127.0.0.1:PORT/simple)")

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # its loop ended already
        if thread is not None:
            thread.join(15)
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _note(self, text: str) -> None:
        line = f"index proxy: {_clean(text)}"
        with self._lock:
            if len(self._notes) < MAX_NOTES and line not in self._notes:
                self._notes.append(line)
                log.info("%s (build from %s)", line, self.index_url)

    def _run(self, started: threading.Event, failure: list[BaseException]) -> None:
        assert self._loop is not None
        try:
            self._loop.run_until_complete(self._main(started))
        except BaseException as exc:  # noqa: BLE001 - reported to start(), which raises it
            failure.append(exc)
            started.set()
        finally:
            self._loop.close()

    async def _main(self, started: threading.Event) -> None:
        assert self._stopping is not None
        server = await asyncio.start_unix_server(self._accept, path=str(self.socket_path), limit=HEAD_LIMIT)
        os.chown(self.socket_path, self.uid, self.uid)
        os.chmod(self.socket_path, 0o600)
        started.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            others = asyncio.all_tasks() - {asyncio.current_task()}  # every connection, started or about to
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    # one connection from the build ----------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._active >= self.max_connections:
                await self._read_head_of_refused(reader)
                raise _Refused(503, f"the build has {self._active} connections open, the most it may")
            self._active += 1
            try:
                await self._serve(reader, writer)
            finally:
                self._active -= 1
        except _Refused as refused:
            self._note(f"refused ({refused.code}): {refused.reason}")
            await self._answer(writer, refused.code, refused.reason)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _read_head_of_refused(self, reader: asyncio.StreamReader) -> None:
        """Take the request a refused client has sent, so it reads our answer instead of a broken pipe. At
        most ``max_connections`` refused connections wait, each at most ``head_s``; more are answered at once."""
        if self._refusing >= self.max_connections:
            return
        self._refusing += 1
        try:
            await asyncio.wait_for(reader.read(HEAD_LIMIT), self.head_s)
        except (OSError, TimeoutError):
            pass
        finally:
            self._refusing -= 1

    async def _answer(self, writer: asyncio.StreamWriter, code: int, reason: str) -> None:
        body = f"worldrt build network: {reason}\n".encode()
        writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode("latin-1") + body)
        try:
            await asyncio.wait_for(writer.drain(), 5)
        except (OSError, TimeoutError):
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_s)
        except (asyncio.LimitOverrunError, ValueError):
            raise _Refused(431, f"a request head longer than {HEAD_LIMIT} bytes") from None
        except asyncio.IncompleteReadError:
            return
        self._spend(len(head))
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Refused(400, "not an HTTP/1 proxy request")
        method, target = parts[0], parts[1]
        if method == "CONNECT":
            endpoint = self._endpoint("https", f"//{target}", target)
            up_reader, up_writer = await self._open(endpoint)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await self._tunnel(reader, writer, up_reader, up_writer)
            return
        url = urlsplit(target)
        if url.scheme != "http":
            raise _Refused(400, f"{target[:100]} is not a CONNECT or an absolute http URL")
        endpoint = self._endpoint("http", target, url.netloc)
        if method not in ("GET", "HEAD"):
            raise _Refused(405, f"{method[:20]} is not how a package index is read (GET and HEAD are)")
        headers = [line for line in lines[1:] if line and line.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
        if any(h.split(":", 1)[0].strip().lower() in ("content-length", "transfer-encoding") for h in headers):
            raise _Refused(400, "a request to a package index carries no body")
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        request = "\r\n".join([f"{method} {path} HTTP/1.1", f"Host: {url.netloc}", *headers, "Connection: close",
                               "", ""]).encode("latin-1")
        up_reader, up_writer = await self._open(endpoint)
        try:
            up_writer.write(request)
            await up_writer.drain()
            try:
                answer = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), self.idle_s)
            except (asyncio.LimitOverrunError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
                raise _Refused(502, f"{endpoint} sent no usable answer ({type(exc).__name__})") from None
            kept = [line for line in answer[:-4].decode("latin-1").split("\r\n")
                    if line.split(":", 1)[0].strip().lower() not in ("connection", "keep-alive", "proxy-connection")]
            writer.write("\r\n".join([*kept, "Connection: close", "", ""]).encode("latin-1"))
            self._spend(len(answer))
            await self._pump(up_reader, writer, _Tunnel())
        finally:
            up_writer.close()

    def _endpoint(self, scheme: str, url: str, shown: str) -> Endpoint:
        try:
            parsed = urlsplit(url)
            host, port = parsed.hostname, parsed.port
        except ValueError:
            host, port = None, None
        if scheme == "https" and port is None:
            raise _Refused(400, f"CONNECT {shown[:100]} names no port")
        if not host:
            raise _Refused(400, f"{shown[:100]} names no host")
        endpoint = Endpoint(scheme, host.lower(), port or 80)
        if endpoint not in self.allowed:
            index = ", ".join(f"{e.scheme} {e}" for e in self.allowed) or "no network host"
            raise _Refused(403, f"{scheme} {endpoint} is not this build's package index (it may reach {index})")
        return endpoint

    async def _open(self, endpoint: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_s
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM),
                                           self.connect_s)
        except (OSError, TimeoutError) as exc:
            raise _Refused(502, f"Failed to resolve {endpoint}: {exc or 'timeout'}") from None
        addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
        usable = [a for a in addresses if may_connect(endpoint, ipaddress.ip_address(a))]
        if not usable:
            self.index_refused = f"{endpoint} resolves to {', '.join(addresses)[:100]}"
            raise _Refused(403, f"{endpoint} resolves to {', '.join(addresses)[:100]}, an address of this machine "
                                f"(or link-local) that builds reach only when the index URL names it")
        last: BaseException | None = None
        for address in usable:
            try:
                return await asyncio.wait_for(asyncio.open_connection(address, endpoint.port, limit=HEAD_LIMIT * 4),
                                              max(0.1, deadline - loop.time()))
            except (OSError, TimeoutError) as exc:
                last = exc
        raise _Refused(502, f"Failed to establish a new connection to {endpoint}: {last or 'timeout'}")

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        tunnel = _Tunnel()
        try:
            await asyncio.gather(self._pump(reader, up_writer, tunnel), self._pump(up_reader, writer, tunnel))
        finally:
            up_writer.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, tunnel: _Tunnel) -> None:
        try:
            while True:
                try:
                    data = await asyncio.wait_for(source.read(CHUNK), self.idle_s)
                except TimeoutError:
                    if time.monotonic() - tunnel.last < self.idle_s:
                        continue
                    break  # idle both ways: the tunnel is closed
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                self._spend(len(data))
                tunnel.last = time.monotonic()
                sink.write(data)
                await sink.drain()
        except (OSError, _Refused):
            pass
        sink.close()

    def _spend(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.byte_cap:
            self._note(f"the build passed its network cap of {self.byte_cap} bytes; its connections were closed")
            raise _Refused(403, f"the build passed its network cap of {self.byte_cap} bytes")
