"""Who may act on a lattice (issue 18, findings 2, 4, 10, 12 and 14): the attacks of the review, made
with a bare nats-py client against a real ``worldrt lattice serve`` (nats-server with the identities of
``worldrt lattice creds init`` and TLS) and a real ``worldrt host serve`` whose providers are on it.

Host b serves gensyn and modal; a and t are callers; c may serve modal but does not run. The attacker
holds no credential, or a's (a member of the lattice: the strongest attacker short of the operator).
Refusals that name an address off loopback use 198.18.0.0/15 only (RFC 2544): from this namespace
nothing is ever sent there, and the fake server that checks what a client sends lives in a network
namespace of the test's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from tests.host.lattice.secure import Identities, make_identities
from tests.support import HostProcess, cmdlines, processes_under, wait_for
from worldrt.host.lattice import Caller, Lattice, LatticeOptions
from worldrt.host.routing import METHODS
from worldrt.v1 import pb

pytestmark = [pytest.mark.daemons, pytest.mark.timeout(300)]

UNREACHABLE = "198.18.0.1"
TOKEN = "access-test-token"
FORGED = "forged by the attacker\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WORLDRT_LATTICE", "WORLDRT_TOKEN"))}
    return {**base, **extra}


def _cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], env=env, cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


class Served:
    """``worldrt lattice serve`` on loopback until ``stop``."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.store = root / f"store-{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "lattice", "serve", "--listen",
                                      f"127.0.0.1:{self.port}", "--store", str(self.store), *args],
                                     env=env or _env(), cwd=root, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:  # its log lines, then the one that says where it serves
            seen.append(line)
            if line.startswith("lattice serving on "):
                break
        else:
            self.stop()
            raise AssertionError("".join(seen))
        self.url = line.split()[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


class World:
    def __init__(self, root: Path, ids: Identities, server: Served, b: HostProcess) -> None:
        self.root, self.ids, self.server, self.b = root, ids, server, b

    @property
    def url(self) -> str:
        return self.server.url

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ids.ca))

    def daemons(self) -> dict[int, bytes]:
        return {pid: line for pid, line in cmdlines(processes_under(str(self.b.home))).items()
                if b"worldrt.providers\0serve\0" in line}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("access")
    ids = make_identities(root, {"b": "gensyn,modal", "a": "", "t": "", "c": "modal"}, ["127.0.0.1"])
    server = Served(root, *ids.serve_args())
    b: HostProcess | None = None
    try:
        (root / "b").mkdir()
        b = HostProcess(root / "b", "--providers", "gensyn,modal", env=ids.env("b", server.url))
        world = World(root, ids, server, b)
        lattice = ids.connect("t", server.url)
        try:
            caller = lattice.run(Caller.open(lattice))
            wait_for(lambda: set(lattice.run(caller.fresh_replicas("modal"))) == {"b"}, 60, "modal on b")
        finally:
            lattice.close()
        yield world
        assert "Traceback" not in b.log(), b.log()[-3000:]
    finally:
        if b is not None:
            b.stop()
        server.stop()


class Intruder:
    """A bare nats-py connection and every error the server sent it."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc, self.errors = nc, errors

    def refused(self, subject: str) -> bool:
        return any(subject.lower() in e and "permissions violation" in e for e in self.errors)

    async def wait_refused(self, subject: str, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.refused(subject):
            if time.monotonic() > deadline:
                return False
            await self.nc.flush(timeout=5)
            await asyncio.sleep(0.02)
        return True


@asynccontextmanager
async def intruder(world: World, identity: str | None) -> AsyncIterator[Intruder]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    extra: dict[str, Any] = {}
    if identity is not None:
        seed = json.loads(world.ids.cred(identity).read_text())["seed"]
        extra = {"nkeys_seed_str": seed, "inbox_prefix": f"_INBOX_{identity}"}
    nc = await nats.connect(world.url, tls=world.tls(), tls_handshake_first=True, allow_reconnect=False,
                            connect_timeout=5, error_cb=on_error, **extra)
    try:
        yield Intruder(nc, errors)
    finally:
        await nc.close()


async def _noop(msg: Msg) -> None:
    pass


# --- 2: any NATS client was admin on every provider ------------------------------------------------------
def test_without_a_credential_nobody_connects(world: World) -> None:
    async def attack() -> str:
        try:
            async with intruder(world, None) as bare:
                await bare.nc.subscribe("worldrt.rpc.>", cb=_noop)
                await bare.nc.flush(timeout=5)
                return "connected and subscribed"
        except (nats.errors.Error, OSError) as exc:
            return f"refused: {exc}"

    outcome = asyncio.run(attack())
    assert outcome.startswith("refused") and "authorization violation" in outcome.lower(), outcome


@pytest.mark.parametrize("rpc, request_", [
    ("Shutdown", pb.ShutdownRequest()), ("Init", pb.ProviderConfig(provider_id="gensyn")),
    ("ReceiveLinkConfig", pb.LinkConfig(link_id="x", target_provider="gensyn", interfaces=["generator"])),
    ("DeleteLink", pb.LinkConfig(link_id="caller/generator/default")),
])
def test_a_member_cannot_reach_a_daemons_lifecycle_or_link_rpcs(world: World, rpc: str, request_: Any) -> None:
    before = world.daemons()
    assert len(before) == 2, before

    async def attack() -> list[tuple[str, str]]:
        answers = []
        async with intruder(world, "a") as member:
            for provider in ("gensyn", "modal"):
                reply = await member.nc.request(f"worldrt.rpc.default.{provider}.any.{rpc}", request_.SerializeToString(),
                                                timeout=30, headers={"x-worldrt-timeout-ms": "20000"})
                headers = reply.headers or {}
                answers.append((headers.get("x-worldrt-status", ""), headers.get("x-worldrt-message", "")))
        return answers

    for status, message in asyncio.run(attack()):
        assert status == str(grpc.StatusCode.PERMISSION_DENIED.value[0]), (status, message)
        assert f"{rpc} is not carried over the lattice" in message and "\n" not in message
    assert world.daemons() == before, "a daemon stopped or was replaced"
    lattice = world.ids.connect("t", world.url)
    try:
        caller = lattice.run(Caller.open(lattice))
        answer = lattice.run(caller.call("gensyn", METHODS["Capabilities"], pb.CapabilitiesRequest().SerializeToString(),
                                         [], 20))
        assert answer.code == grpc.StatusCode.OK and answer.replica == "b"
    finally:
        lattice.close()



@pytest.mark.parametrize("rpc, request_, code", [
    ("BuildImage", pb.BuildImageRequest(name="default", pip=["rtdemo"], replace=True), grpc.StatusCode.PERMISSION_DENIED),
    ("DeleteImage", pb.ImageRef(image="default"), grpc.StatusCode.FAILED_PRECONDITION),
])
def test_image_writes_from_the_lattice_never_reach_the_daemons_own_names(world: World, rpc: str, request_: Any,
                                                                        code: grpc.StatusCode) -> None:
    """Image writes cross the lattice as the lattice's (x-worldrt-owner: lattice): the daemon refuses them
    on its own image, and nothing else changes."""
    before = world.daemons()

    async def attack() -> tuple[str, str]:
        async with intruder(world, "a") as member:
            reply = await member.nc.request(f"worldrt.rpc.default.modal.any.{rpc}", request_.SerializeToString(),
                                            timeout=30, headers={"x-worldrt-timeout-ms": "20000"})
            headers = reply.headers or {}
            return headers.get("x-worldrt-status", ""), headers.get("x-worldrt-message", "")

    status, message = asyncio.run(attack())
    assert status == str(code.value[0]), (status, message)
    assert "default" in message and "not carried" not in message
    assert world.daemons() == before, "a daemon stopped or was replaced"


def test_a_hosts_id_is_its_credentials_and_it_serves_only_what_the_lattice_lets_it(world: World) -> None:
    (world.root / "fake-b").mkdir(exist_ok=True)
    claim = _cli("host", "serve", "--host-id", "b", "--home", str(world.root / "fake-b"),
                 env=world.ids.env("a", world.url), cwd=world.root)
    assert claim.returncode == 7 and "is host 'a''s, not host 'b''s" in claim.stderr, claim.stderr
    (world.root / "greedy-a").mkdir(exist_ok=True)
    greedy = _cli("host", "serve", "--providers", "gensyn", "--home", str(world.root / "greedy-a"),
                  env=world.ids.env("a", world.url), cwd=world.root, timeout=120)
    assert greedy.returncode == 7, greedy.stderr  # PermissionDenied
    assert "does not let host a serve gensyn" in greedy.stderr and "--serves a=gensyn" in greedy.stderr, greedy.stderr
    assert not processes_under(str(world.root / "greedy-a")), "the refused host left a process"


def test_links_are_written_by_admin_only(world: World) -> None:
    as_host = _cli("link", "put", "generator=gensyn", "--source", "caller", "--lattice", world.url,
                   env=world.ids.env("a", world.url), cwd=world.root)
    assert as_host.returncode == 2 and "needs admin's" in as_host.stderr, as_host.stderr
    with pytest.raises(grpc.RpcError) as info:
        world.b.stub.PutLink(pb.LinkConfig(source_component="caller", interfaces=["generator"], target_provider="gensyn"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "admin credential" in info.value.details()

    async def attack() -> bool:
        async with intruder(world, "a") as member:
            await member.nc.publish("$KV.WORLDRT_LINKS_default.caller/generator/default", b'{"target_provider": "x"}')
            return await member.wait_refused("$KV.WORLDRT_LINKS_default.caller/generator/default")

    assert asyncio.run(attack())
    as_admin = _cli("link", "put", "generator=gensyn", "--source", "caller", "--lattice", world.url,
                    env=world.ids.env("admin", world.url), cwd=world.root)
    assert as_admin.returncode == 0, as_admin.stderr
    listed = _cli("link", "list", "--json", "--lattice", world.url, env=world.ids.env("t", world.url), cwd=world.root)
    assert [x["target_provider"] for x in json.loads(listed.stdout)["links"]] == ["gensyn"], listed.stderr
    gone = _cli("link", "del", "caller/generator/default", "--lattice", world.url,
                env=world.ids.env("admin", world.url), cwd=world.root)
    assert gone.returncode == 0, gone.stderr


# --- 4: any client read every call and answered it first ---------------------------------------------------
def test_a_member_cannot_read_calls_or_answers_and_its_forged_answers_never_arrive(world: World) -> None:
    async def attack() -> tuple[list[str], list[str], int]:
        async with intruder(world, "a") as spy, intruder(world, "c") as other_replica:
            seen: list[str] = []
            forged = pb.ExecutionResult(stdout=FORGED, exit_code=0).SerializeToString()

            async def answer_first(msg: Msg) -> None:
                seen.append(msg.subject)
                if msg.reply:
                    await spy.nc.publish(msg.reply, forged, headers={"x-worldrt-kind": "end", "x-worldrt-status": "0",
                                                                      "x-worldrt-replica": "b"})

            wanted = ["worldrt.rpc.>", "worldrt.rpc.default.modal.any.*", "_INBOX.>", "_INBOX_t.>", "_INBOX_b.>", ">"]
            for subject in wanted:
                await spy.nc.subscribe(subject, cb=answer_first)
            await spy.nc.subscribe("worldrt.rpc.default.modal.any.*", queue="worldrt.rpc.default.modal", cb=answer_first)
            # c may serve modal, but b's own replica subject is b's alone.
            await other_replica.nc.subscribe("worldrt.rpc.default.modal.b.*", cb=answer_first)
            refused = [s for s in wanted if await spy.wait_refused(s)]
            refused += ["c: modal.b"] if await other_replica.wait_refused("worldrt.rpc.default.modal.b.*") else []
            # Blind forgery: answers to every inbox a caller might use.
            for inbox in ("_INBOX_t.x.1", "_INBOX.x.1"):
                await spy.nc.publish(inbox, forged, headers={"x-worldrt-kind": "end", "x-worldrt-status": "0"})
            refused += ["publish"] if await spy.wait_refused("_INBOX_t.x.1") else []

            lattice = world.ids.connect("t", world.url)
            try:
                caller = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(Caller.open(lattice), lattice.loop))
                real = 0
                for _ in range(10):
                    answer = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(caller.call(
                        "modal", METHODS["Execute"], pb.ExecuteRequest(code="print(6*7)", language="python",
                                                                       env={"API_KEY": "sk-secret"}).SerializeToString(),
                        [], 60), lattice.loop))
                    result = pb.ExecutionResult.FromString(answer.data)
                    real += answer.code == grpc.StatusCode.OK and result.stdout == "42\n" and answer.replica == "b"
            finally:
                await asyncio.to_thread(lattice.close)
            return refused, seen, real

    refused, seen, real = asyncio.run(attack())
    assert real == 10, f"{10 - real} of 10 Execute answers were not the real ones"
    assert seen == [], f"the spy saw {seen}"
    assert refused == ["worldrt.rpc.>", "worldrt.rpc.default.modal.any.*", "_INBOX.>", "_INBOX_t.>", "_INBOX_b.>", ">",
                       "c: modal.b", "publish"]


# --- 12: any client could publish to or purge the streams --------------------------------------------------
def test_a_member_writes_only_its_own_rows_and_keys_and_purges_nothing(world: World) -> None:
    async def attack() -> list[str]:
        async with intruder(world, "a") as member:
            js = member.nc.jetstream(timeout=2)
            refused = []
            for name, subject, action in [
                ("purge", "$JS.API.STREAM.PURGE.WORLDRT_INVOCATIONS_default",
                 js.purge_stream("WORLDRT_INVOCATIONS_default")),
                ("delete stream", "$JS.API.STREAM.DELETE.WORLDRT_RUNS_default", js.delete_stream("WORLDRT_RUNS_default")),
                ("b's row", "worldrt.registry.default.invocations.b",
                 js.publish("worldrt.registry.default.invocations.b", b'{"forged": 1}')),
                ("b's run", "worldrt.registry.default.runs.b", js.publish("worldrt.registry.default.runs.b", b"{}")),
                ("read the rows", "$JS.API.CONSUMER", js.pull_subscribe("worldrt.registry.default.invocations.*",
                                                                         durable="spy",
                                                                         stream="WORLDRT_INVOCATIONS_default")),
                ("b's host key", "$KV.WORLDRT_HOSTS_default.b", js.publish("$KV.WORLDRT_HOSTS_default.b", b"{}")),
                ("b's replica key", "$KV.WORLDRT_PROVIDERS_default.modal.b",
                 js.publish("$KV.WORLDRT_PROVIDERS_default.modal.b", b'{"healthy": false}')),
                ("a bucket", "$JS.API.STREAM.CREATE.KV_EVIL", js.create_key_value(bucket="EVIL")),
            ]:
                try:
                    await action
                except (TimeoutError, nats.errors.Error):
                    pass
                if await member.wait_refused(subject):
                    refused.append(name)
            # Its own key, with a roll-up header that would erase every other key of the bucket.
            try:
                await js.publish("$KV.WORLDRT_HOSTS_default.a", b"{}", headers={"Nats-Rollup": "all"})
            except nats.errors.Error as exc:
                refused.append("roll-up" if "rollup not permitted" in str(exc) else str(exc))
            await js.publish("worldrt.registry.default.invocations.a", b"not a row")  # its own subject: taken
            return refused

    refused = asyncio.run(attack())
    assert refused == ["purge", "delete stream", "b's row", "b's run", "read the rows", "b's host key",
                       "b's replica key", "a bucket", "roll-up"]
    admin = world.ids.connect("admin", world.url)
    try:
        async def state() -> tuple[int, list[str]]:
            info = await admin.js.stream_info("WORLDRT_INVOCATIONS_default")
            hosts = await admin.js.key_value("WORLDRT_HOSTS_default")
            return info.state.messages, await hosts.keys()

        messages, keys = admin.run(state())
        assert messages >= 1 and "b" in keys
    finally:
        admin.close()


# --- 10: the token went in cleartext off loopback ----------------------------------------------------------
def test_a_client_refuses_to_send_a_credential_in_cleartext_off_loopback(world: World, tmp_path: Path) -> None:
    started = time.monotonic()
    for env in (_env(WORLDRT_LATTICE_TOKEN=TOKEN), _env(WORLDRT_LATTICE_CREDS=str(world.ids.cred("t")))):
        done = _cli("lattice", "status", "--lattice", f"nats://{UNREACHABLE}:4222", env=env, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr  # InvalidArgument
        assert "refusing to send the lattice's" in done.stderr and f"in cleartext to nats://{UNREACHABLE}:4222" in done.stderr
        assert f"tls://{UNREACHABLE}:4222" in done.stderr
    assert time.monotonic() - started < 30, "a refusal is immediate, never a connection attempt"
    with pytest.raises(Exception, match="refusing to send the lattice's token in cleartext"):
        LatticeOptions(f"nats://{UNREACHABLE}:4222", token=TOKEN)
    LatticeOptions(f"nats://127.0.0.1:{_free_port()}", token=TOKEN)  # loopback: that traffic stays on the machine


FAKE_SERVER = """
import socket, sys
# A NATS server that offers no TLS: it records what every connection sends until none comes for 6 s.
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
server.settimeout(6)
print("ready", flush=True)
got = b""
while True:
    try:
        conn, _ = server.accept()
    except OSError:
        break
    conn.settimeout(3)
    conn.sendall(b'INFO {"server_id":"fake","version":"2.10.0","proto":1,"headers":true,"auth_required":true,'
                 b'"tls_required":false,"max_payload":1048576}\\r\\n')
    try:
        while len(got) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    conn.close()
    open(sys.argv[3], "wb").write(got)
"""


def _fake_server(argv_prefix: list[str], host: str, port: int, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*argv_prefix, sys.executable, "-c", FAKE_SERVER, host, str(port), str(out)], text=True,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_server_that_offers_no_tls_gets_no_credential(tmp_path: Path) -> None:
    """tls://: the client starts TLS itself, so a server (or someone in between) that says it has none
    never reads the token in cleartext."""
    port, out = _free_port(), tmp_path / "received"
    fake = _fake_server([], "127.0.0.1", port, out)
    try:
        done = _cli("lattice", "status", "--lattice", f"tls://127.0.0.1:{port}", env=_env(WORLDRT_LATTICE_TOKEN=TOKEN),
                    cwd=tmp_path)
        assert done.returncode == 69, done.stderr
        fake.wait(30)
    finally:
        fake.kill()
        fake.wait()
    received = out.read_bytes()
    assert TOKEN.encode() not in received and b"CONNECT" not in received, received[:200]
    assert received[:1] in (b"", b"\x16"), received[:20]  # nothing, or a TLS ClientHello


def test_in_a_namespace_off_loopback_the_token_never_leaves_in_cleartext(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs a network namespace of its own, which needs root")
    namespace = f"wrt18a{os.getpid()}"
    address = f"198.18.{200 + os.getpid() % 50}.1"
    made = subprocess.run(["ip", "netns", "add", namespace], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this machine refuses network namespaces: {made.stderr.strip()}")
    try:
        for args in (["link", "set", "lo", "up"], ["addr", "add", f"{address}/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", namespace, *args], check=True, capture_output=True)
        inside = ["ip", "netns", "exec", namespace]
        out = tmp_path / "received"
        fake = _fake_server(inside, address, 4222, out)
        try:
            done = subprocess.run([*inside, sys.executable, "-m", "worldrt.host.cli", "lattice", "status", "--lattice",
                                   f"nats://{address}:4222"], env=_env(WORLDRT_LATTICE_TOKEN=TOKEN), cwd=tmp_path,
                                  text=True, capture_output=True, timeout=60)
            assert done.returncode == 2 and "refusing to send the lattice's token in cleartext" in done.stderr, done.stderr
        finally:
            fake.kill()
            fake.wait()
        assert not out.exists() or TOKEN.encode() not in out.read_bytes()
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def test_lattice_serve_refuses_to_listen_off_loopback_without_identities_and_tls(world: World, tmp_path: Path) -> None:
    port = _free_port()
    certs = ["--tls-cert", str(world.ids.certs / "hub.pem"), "--tls-key", str(world.ids.certs / "hub.key")]
    for listen, args, env in [
        (f"0.0.0.0:{port}", [], _env()),
        (f"0.0.0.0:{port}", [], _env(WORLDRT_LATTICE_TOKEN=TOKEN)),
        (f"0.0.0.0:{port}", certs, _env(WORLDRT_LATTICE_TOKEN=TOKEN)),
        (f"{UNREACHABLE}:{port}", ["--creds", str(world.ids.creds)], _env()),
    ]:
        try:
            done = _cli("lattice", "serve", "--listen", listen, "--store", str(tmp_path / "store"), *args, env=env,
                        cwd=tmp_path, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"lattice serve {listen} {args} served")
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert f"refusing to serve the lattice on {listen} without" in done.stderr, done.stderr
        assert "worldrt lattice creds init" in done.stderr
    assert not processes_under(str(tmp_path / "store"))


# --- 14: the read-only status made the buckets -------------------------------------------------------------
def test_status_of_a_fresh_lattice_makes_nothing(tmp_path: Path) -> None:
    server = Served(tmp_path, env=_env(WORLDRT_LATTICE_TOKEN=TOKEN))
    try:
        done = _cli("lattice", "status", "--json", "--lattice", server.url, env=_env(WORLDRT_LATTICE_TOKEN=TOKEN),
                    cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["hosts"] == [] and json.loads(done.stdout)["links"] == []
        listed = _cli("link", "list", "--json", "--lattice", server.url, env=_env(WORLDRT_LATTICE_TOKEN=TOKEN),
                      cwd=tmp_path)
        assert listed.returncode == 0 and json.loads(listed.stdout) == {"links": []}, listed.stderr
        lattice = Lattice(LatticeOptions(server.url, token=TOKEN))
        try:
            async def streams() -> list[str]:
                return [info.config.name for info in await lattice.js.streams_info()]

            assert lattice.run(streams()) == []
        finally:
            lattice.close()
    finally:
        server.stop()


def test_creds_init_writes_public_keys_and_one_private_seed_per_identity(tmp_path: Path) -> None:
    directory = tmp_path / "ids"
    made = _cli("lattice", "creds", "init", str(directory), "--host", "a,b", "--serves", "b=modal", "--json",
                env=_env(), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert sorted(data["made"]) == ["a", "admin", "b", "registry"]
    assert data["identities"]["b"]["serves"] == ["modal"] and data["identities"]["a"]["serves"] == []
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    public = (directory / "lattice.json").read_text()
    for name in ("a", "b", "admin", "registry"):
        cred = directory / f"{name}.cred"
        assert oct(cred.stat().st_mode & 0o777) == "0o600"
        seed = json.loads(cred.read_text())["seed"]
        assert seed.startswith("SU") and seed not in public and data["identities"][name]["nkey"] in public
    again = _cli("lattice", "creds", "init", str(directory), "--host", "c", "--serves", "a=gensyn", "--json",
                 env=_env(), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    after = json.loads(again.stdout)
    assert after["made"] == ["c"] and after["identities"]["a"]["serves"] == ["gensyn"]
    assert all(after["identities"][n]["nkey"] == data["identities"][n]["nkey"] for n in ("a", "b", "admin", "registry"))
    for bad, why in ((["--host", "admin"], "is reserved"), (["--host", "x.y"], "must be 1-64"),
                     (["--host", "d", "--serves", "d=nope"], "unknown provider 'nope'")):
        refused = _cli("lattice", "creds", "init", str(directory), *bad, env=_env(), cwd=tmp_path)
        assert refused.returncode == 2 and why in refused.stderr and refused.stderr.count("\n") == 1, refused.stderr
    (directory / "a.cred").chmod(0o644)
    loose = _cli("lattice", "status", "--lattice", "nats://127.0.0.1:1", env=_env(
        WORLDRT_LATTICE_CREDS=str(directory / "a.cred")), cwd=tmp_path)
    assert loose.returncode == 2 and "is readable by others (mode 0644)" in loose.stderr, loose.stderr


def test_a_lattice_that_requires_client_certificates_takes_only_them(world: World, tmp_path: Path) -> None:
    from worldrt.host.lattice import LatticeError
    from worldrt.host.routing import init_tls

    init_tls(world.ids.certs, ["t"], [])
    server = Served(tmp_path, *world.ids.serve_args(), "--tls-client-ca", str(world.ids.ca))
    try:
        without = _cli("lattice", "status", "--lattice", server.url, env=world.ids.env("t", server.url), cwd=tmp_path)
        assert without.returncode == 69 and without.stderr.count("\n") == 1, without.stderr
        with_cert = _cli("lattice", "status", "--json", "--lattice", server.url, "--lattice-tls-cert",
                         str(world.ids.certs / "t.pem"), "--lattice-tls-key", str(world.ids.certs / "t.key"),
                         env=world.ids.env("t", server.url), cwd=tmp_path)
        assert with_cert.returncode == 0, with_cert.stderr
        with pytest.raises(LatticeError, match="needs both --lattice-tls-cert and --lattice-tls-key"):
            LatticeOptions(server.url, tls_cert=str(world.ids.certs / "t.pem"))
    finally:
        server.stop()


def test_buckets_an_older_version_made_refuse_roll_ups_once_the_lattice_is_served_again(tmp_path: Path) -> None:
    from worldrt.host.lattice import make_buckets

    server = Served(tmp_path, env=_env(WORLDRT_LATTICE_TOKEN=TOKEN))
    lattice = Lattice(LatticeOptions(server.url, token=TOKEN))
    try:
        async def older_then_now() -> str:
            old = await lattice.js.create_key_value(bucket="WORLDRT_HOSTS_default", history=1, ttl=5)
            await old.put("b", b"{}")
            await make_buckets(lattice)
            try:
                await lattice.js.publish("$KV.WORLDRT_HOSTS_default.a", b"{}", headers={"Nats-Rollup": "all"})
            except nats.errors.Error as exc:
                return str(exc)
            return "rolled up"

        assert "rollup not permitted" in lattice.run(older_then_now())
    finally:
        lattice.close()
        server.stop()
