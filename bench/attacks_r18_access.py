"""Issue 18's lattice access attacks (findings 2, 4, 10, 12 and 14), for bench/attacks.py.

    .venv/bin/python bench/attacks_r18_access.py

``run_attacks(attack, tmp)`` starts a real lattice under ``tmp`` on loopback: ``worldrt lattice serve``
and ``worldrt host serve --host-id b --providers gensyn,modal`` on it. Where the code has identities
(``worldrt lattice creds init``), the lattice runs as the README says it must (identities for hosts a, b
and t, the registry and admin; TLS); where it has none (the code before issue 18), it runs as that
code's README showed on loopback, without credentials, and the attacker needs none. The attacker is a
bare nats-py client: no credential, or host a's (a member of the lattice, the strongest attacker short of
the operator). Each attack is one call of ``attack(finding, attack, expected, fn)``, ``fn() -> (blocked,
observed)``. Everything started here is stopped before it returns, even on error.

Addresses off loopback are 198.18.0.0/15 only (RFC 2544); the fake server that checks what a client
sends off loopback runs in a network namespace made here (root only; otherwise that attack only checks
the refusal).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import nats
import nats.aio.client
import nats.errors

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.support import cmdlines, processes_under
from worldrt.host.lattice import Caller, Lattice, LatticeOptions
from worldrt.host.routing import METHODS
from worldrt.v1 import pb

Attack = Callable[[str, str, str, Callable[[], tuple[bool, str]]], None]
TOKEN = "r18-access-token"
FORGED = "forged by the attacker\n"
UNREACHABLE = "198.18.0.1"
LATTICE = "default"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("WORLDRT_LATTICE", "WORLDRT_TOKEN", "WORLDRT_TLS",
                                                                        "WORLDRT_DB", "WORLDRT_STATE_DIR"))}


def _cli(*args: str, env: dict[str, str], cwd: pathlib.Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], env=env, cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


def _line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1][:160]


def _stop(proc: subprocess.Popen[Any], timeout_s: float = 60) -> None:
    """SIGTERM, then SIGKILL; and every process under its marker goes with it (parent-death signals)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_line(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> str:
    """Read ``proc``'s output until a line holds ``marker`` (starts with it, when it ends with a space),
    bounded by a timer that kills it."""
    assert proc.stdout is not None
    killer = __import__("threading").Timer(timeout_s, proc.kill)
    killer.start()
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if (line.startswith(marker) if marker.endswith(" ") else marker in line):
                return line
    finally:
        killer.cancel()
    raise RuntimeError(f"no {marker!r} from {proc.args}: {''.join(seen)[-800:]}")


@dataclass
class Lab:
    """The lattice under attack, as the code under test sets it up."""

    root: pathlib.Path
    url: str
    secure: bool
    creds: pathlib.Path | None
    ca: pathlib.Path | None
    b_home: pathlib.Path

    def env(self, identity: str | None = None) -> dict[str, str]:
        env = {**_base_env(), "WORLDRT_LATTICE": self.url}
        if self.secure and identity is not None:
            assert self.creds is not None and self.ca is not None
            env.update(WORLDRT_LATTICE_CREDS=str(self.creds / f"{identity}.cred"), WORLDRT_LATTICE_TLS_CA=str(self.ca))
        return env

    def tls(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca)) if self.secure and self.ca else None

    async def connect(self, identity: str | None, errors: list[str]) -> nats.aio.client.Client:
        """A bare nats-py connection, as ``identity`` where the lattice has identities."""
        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        extra: dict[str, Any] = {}
        if self.secure and identity is not None:
            assert self.creds is not None
            seed = json.loads((self.creds / f"{identity}.cred").read_text())["seed"]
            extra = {"nkeys_seed_str": seed, "inbox_prefix": f"_INBOX_{identity}"}
        tls = self.tls()
        if tls is not None:
            extra.update(tls=tls, tls_handshake_first=True)
        return await nats.connect(self.url, allow_reconnect=False, connect_timeout=5, error_cb=on_error, **extra)

    def lattice(self, identity: str) -> Lattice:
        """The library's own client, as a host's caller would be."""
        if not self.secure:
            return Lattice(LatticeOptions(self.url, LATTICE))
        from worldrt.host.lattice import load_credential  # type: ignore[attr-defined]

        assert self.creds is not None
        return Lattice(LatticeOptions(self.url, LATTICE, creds=load_credential(self.creds / f"{identity}.cred"),
                                      tls_ca=str(self.ca)))  # type: ignore[call-arg]

    def daemons(self) -> set[int]:
        return {pid for pid, line in cmdlines(processes_under(str(self.b_home))).items()
                if b"worldrt.providers\0serve\0" in line}


def _setup(stack: ExitStack, tmp: pathlib.Path) -> Lab:
    root = tmp / "r18-access"
    root.mkdir(parents=True, exist_ok=True)
    creds, certs = root / "creds", root / "certs"
    made = _cli("lattice", "creds", "init", str(creds), "--host", "a,b,t", "--serves", "b=gensyn,modal",
                env=_base_env(), cwd=root)
    secure = made.returncode == 0
    port = _free_port()
    args = ["lattice", "serve", "--listen", f"127.0.0.1:{port}", "--store", str(root / "store")]
    if secure:
        tls = _cli("tls", "init", str(certs), "--host", "hub", "--ip", "127.0.0.1", env=_base_env(), cwd=root)
        if tls.returncode != 0:
            raise RuntimeError(f"tls init: {tls.stderr}")
        args += ["--creds", str(creds), "--tls-cert", str(certs / "hub.pem"), "--tls-key", str(certs / "hub.key")]
    server = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", *args], env=_base_env(), cwd=root, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stack.callback(_stop, server)
    url = _wait_line(server, "lattice serving on ", 60).split()[-1]
    # Keep reading its output so it never blocks on a full pipe.
    __import__("threading").Thread(target=lambda: server.stdout and server.stdout.read(), daemon=True).start()
    lab = Lab(root, url, secure, creds if secure else None, certs / "ca.pem" if secure else None, root / "b")
    lab.b_home.mkdir(exist_ok=True)
    host = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "host", "serve", "--host-id", "b", "--providers",
                             "gensyn,modal"], env={**lab.env("b"), "WORLDRT_STATE_DIR": str(lab.b_home)},
                            cwd=lab.b_home, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stack.callback(_stop, host)
    _wait_line(host, "host serving on", 180)
    __import__("threading").Thread(target=lambda: host.stdout and host.stdout.read(), daemon=True).start()
    caller = lab.lattice("t")
    try:
        found = Caller.open(caller)
        calls = caller.run(found)
        deadline = time.monotonic() + 60
        while set(caller.run(calls.fresh_replicas("modal"))) != {"b"} or \
                set(caller.run(calls.fresh_replicas("gensyn"))) != {"b"}:
            if time.monotonic() > deadline:
                raise RuntimeError("gensyn and modal on b did not join the lattice within 60 s")
            time.sleep(0.1)
    finally:
        caller.close()
    return lab


# --- the attacks ---------------------------------------------------------------------------------------------
def _bare_connects(lab: Lab) -> tuple[bool, str]:
    async def go() -> tuple[bool, str]:
        errors: list[str] = []
        try:
            nc = await lab.connect(None, errors)
        except (nats.errors.Error, OSError) as exc:
            return True, f"refused: {_line(str(exc) or repr(exc))} {errors[:1]}"
        try:
            await nc.subscribe("worldrt.rpc.>", cb=_noop)
            await nc.flush(timeout=5)
            await asyncio.sleep(0.2)
            refused = any("permissions violation" in e for e in errors)
            return refused, "connected; " + ("subscription refused" if refused else "subscribed to worldrt.rpc.>")
        finally:
            await nc.close()

    return asyncio.run(go())


async def _noop(msg: Any) -> None:
    pass


def _bridge_rpc(lab: Lab, provider: str, rpc: str, request: Any) -> Callable[[], tuple[bool, str]]:
    def fn() -> tuple[bool, str]:
        before = lab.daemons()

        async def go() -> tuple[str, str]:
            errors: list[str] = []
            nc = await lab.connect("a", errors)
            try:
                reply = await nc.request(f"worldrt.rpc.{LATTICE}.{provider}.any.{rpc}", request.SerializeToString(),
                                         timeout=60, headers={"x-worldrt-timeout-ms": "30000"})
                headers = reply.headers or {}
                return headers.get("x-worldrt-status", "?"), headers.get("x-worldrt-message", "")
            finally:
                await nc.close()

        try:
            status, message = asyncio.run(go())
        except (nats.errors.Error, OSError) as exc:
            return True, f"no answer: {_line(str(exc) or repr(exc))}"
        time.sleep(1.0 if rpc == "Shutdown" else 0.0)  # a daemon told to shut down takes a moment to go
        after = lab.daemons()
        refused = {str(c.value[0]) for c in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)}
        # Image writes cross the lattice since issue 19, owned by the lattice: the daemon's and the host's names
        # stay out of their reach. The lifecycle and link RPCs are still not carried at all.
        denied = status in refused and (rpc in ("BuildImage", "DeleteImage") or "not carried over the lattice" in message)
        code = next((c.name for c in grpc.StatusCode if str(c.value[0]) == status), status)
        return denied and after == before, (f"{code}: {_line(message)}; daemons of b "
                                            f"{'unchanged' if after == before else f'{sorted(before)} -> {sorted(after)}'}")

    return fn


def _claim_other_id(lab: Lab) -> tuple[bool, str]:
    home = lab.root / "claimed-c"
    home.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "host", "serve", "--host-id", "c"],
                            env={**lab.env("a"), "WORLDRT_STATE_DIR": str(home)}, cwd=home, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        try:
            line = _wait_line(proc, "host serving on", 60)
        except RuntimeError as exc:
            proc.wait(10)
            return proc.returncode == 2, f"exit {proc.returncode}: {_line(str(exc))}"
        return False, f"joined the lattice as host c with a's credential ({line.strip()[-60:]})"
    finally:
        _stop(proc)


def _serve_open(lab: Lab) -> tuple[bool, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "lattice", "serve", "--listen", f"0.0.0.0:{port}",
                             "--store", str(lab.root / "open-store")], env=_base_env(), cwd=lab.root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        try:
            _wait_line(proc, "lattice serving on ", 30)
        except RuntimeError as exc:
            proc.wait(10)
            return proc.returncode == 2 and "refusing" in str(exc), f"exit {proc.returncode}: {_line(str(exc))}"
        return False, f"serving on 0.0.0.0:{port} to anyone, with no credential"
    finally:
        _stop(proc)


def _spy_and_forge(lab: Lab) -> tuple[bool, str]:
    async def go() -> tuple[int, int, int]:
        errors: list[str] = []
        spy = await lab.connect("a", errors)
        seen: list[str] = []
        forged = pb.ExecutionResult(stdout=FORGED, exit_code=0).SerializeToString()

        async def answer_first(msg: Any) -> None:
            seen.append(msg.subject)
            if msg.reply:
                await spy.publish(msg.reply, forged, headers={"x-worldrt-kind": "end", "x-worldrt-status": "0",
                                                             "x-worldrt-replica": "b"})

        try:
            for subject in ("worldrt.rpc.>", "_INBOX.>", "_INBOX_t.>"):
                await spy.subscribe(subject, cb=answer_first)
            await spy.flush(timeout=5)
            lattice = lab.lattice("t")
            try:
                loop = lattice.loop
                caller = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(Caller.open(lattice), loop))
                real = fake = 0
                request = pb.ExecuteRequest(code="print(6*7)", language="python", env={"API_KEY": "sk-r18-secret"})
                for _ in range(10):
                    answer = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(caller.call(
                        "modal", METHODS["Execute"], request.SerializeToString(), [], 60), loop))
                    stdout = pb.ExecutionResult.FromString(answer.data).stdout if answer.data else ""
                    real += stdout == "42\n"
                    fake += stdout == FORGED
            finally:
                await asyncio.to_thread(lattice.close)
            return real, fake, len(seen)
        finally:
            await spy.close()

    real, fake, seen = asyncio.run(go())
    return real == 10 and fake == 0 and seen == 0, (f"{real}/10 real answers, {fake} forged accepted; the spy read "
                                                    f"{seen} message(s) (code, env values, reply inboxes)")


def _streams(lab: Lab, what: str) -> Callable[[], tuple[bool, str]]:
    def fn() -> tuple[bool, str]:
        async def go() -> tuple[bool, str]:
            errors: list[str] = []
            nc = await lab.connect("a", errors)
            js = nc.jetstream(timeout=3)
            try:
                if what == "purge":
                    await js.purge_stream(f"WORLDRT_INVOCATIONS_{LATTICE}")
                    return False, "purged WORLDRT_INVOCATIONS_default"
                if what == "row":
                    info = await js.stream_info(f"WORLDRT_INVOCATIONS_{LATTICE}")
                    subject = (info.config.subjects or [""])[0].replace("*", "b")
                    row = {"invocation_id": "forged-r18", "provider_id": "modal", "operation": "execute",
                           "verse_id": "1", "output_result": json.dumps({"wev": 1e9}), "host": "b"}
                    ack = await js.publish(subject, json.dumps(row).encode(), headers={"Nats-Msg-Id": "forged-r18"})
                    return False, f"stored a forged row of host b at {subject} (seq {ack.seq})"
                if what == "key":
                    await js.publish(f"$KV.WORLDRT_HOSTS_{LATTICE}.b", b'{"host_id": "b", "providers": []}')
                    return False, "overwrote host b's key in WORLDRT_HOSTS_default"
                if what == "rollup":
                    await js.publish(f"$KV.WORLDRT_HOSTS_{LATTICE}.a", b"{}", headers={"Nats-Rollup": "all"})
                    return False, "a roll-up on its own key erased every host's key of WORLDRT_HOSTS_default"
                raise AssertionError(what)
            except (nats.errors.Error, TimeoutError) as exc:
                refused = [e for e in errors if "permissions violation" in e]
                why = refused[0] if refused else _line(str(exc) or repr(exc))
                return True, f"refused: {why}"
            finally:
                await nc.close()

        return asyncio.run(go())

    return fn


FAKE_SERVER = """
import socket, sys
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


def _fake_server(prefix: list[str], host: str, port: int, out: pathlib.Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*prefix, sys.executable, "-c", FAKE_SERVER, host, str(port), str(out)], text=True,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _cleartext_off_loopback(lab: Lab) -> tuple[bool, str]:
    env = {**_base_env(), "WORLDRT_LATTICE_TOKEN": TOKEN}
    if os.geteuid() != 0:
        done = _cli("lattice", "status", "--lattice", f"nats://{UNREACHABLE}:4222", env=env, cwd=lab.root, timeout=60)
        refused = done.returncode != 0 and "refusing to send" in done.stderr
        return refused, f"exit {done.returncode}: {_line(done.stderr)} (no namespace without root: refusal only)"
    namespace, address = f"wrt18r{os.getpid()}", f"198.18.{200 + os.getpid() % 50}.1"
    subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
    try:
        for args in (["link", "set", "lo", "up"], ["addr", "add", f"{address}/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", namespace, *args], check=True, capture_output=True)
        inside, out = ["ip", "netns", "exec", namespace], lab.root / "cleartext-received"
        fake = _fake_server(inside, address, 4222, out)
        try:
            done = subprocess.run([*inside, sys.executable, "-m", "worldrt.host.cli", "lattice", "status", "--lattice",
                                   f"nats://{address}:4222"], env=env, cwd=lab.root, text=True, capture_output=True,
                                  timeout=90)
            fake.wait(30)
        finally:
            fake.kill()
            fake.wait()
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    leaked = out.exists() and TOKEN.encode() in out.read_bytes()
    return not leaked, (f"the token reached {address} in cleartext" if leaked else
                        f"nothing sent; exit {done.returncode}: {_line(done.stderr)}")


def _downgrade(lab: Lab) -> tuple[bool, str]:
    port, out = _free_port(), lab.root / "downgrade-received"
    fake = _fake_server([], "127.0.0.1", port, out)
    try:
        done = _cli("lattice", "status", "--lattice", f"tls://127.0.0.1:{port}",
                    env={**_base_env(), "WORLDRT_LATTICE_TOKEN": TOKEN}, cwd=lab.root, timeout=90)
        fake.wait(30)
    finally:
        fake.kill()
        fake.wait()
    received = out.read_bytes() if out.exists() else b""
    leaked = TOKEN.encode() in received
    return not leaked, ("the token went in cleartext to a tls:// URL whose server offered no TLS" if leaked else
                        f"no token sent (exit {done.returncode}: {_line(done.stderr)})")


def _status_makes_nothing(lab: Lab) -> tuple[bool, str]:
    port = _free_port()
    env = {**_base_env(), "WORLDRT_LATTICE_TOKEN": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "lattice", "serve", "--listen",
                               f"127.0.0.1:{port}", "--store", str(lab.root / "fresh-store")], env=env, cwd=lab.root,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = _wait_line(server, "lattice serving on ", 60).split()[-1]
        done = _cli("lattice", "status", "--json", "--lattice", url, env=env, cwd=lab.root)
        lattice = Lattice(LatticeOptions(url, token=TOKEN))
        try:
            async def names() -> list[str]:
                return [info.config.name for info in await lattice.js.streams_info()]

            made = lattice.run(names())
        finally:
            lattice.close()
        return not made, f"status exit {done.returncode}; streams after it: {made or 'none'}"
    finally:
        _stop(server)


def run_attacks(attack: Attack, tmp: pathlib.Path) -> None:
    with ExitStack() as stack:
        lab = _setup(stack, tmp)
        mode = "identities and TLS" if lab.secure else "no credentials (the code has no identities)"
        attack("r18-2", f"a bare NATS client (no credential) joins the lattice [{mode}] and subscribes to worldrt.rpc.>",
               "refused: authorization violation", lambda: _bare_connects(lab))
        for rpc, provider, request in [
            ("Init", "gensyn", pb.ProviderConfig(provider_id="gensyn")),
            ("ReceiveLinkConfig", "gensyn", pb.LinkConfig(link_id="r18", target_provider="gensyn",
                                                          interfaces=["generator"], values={"x": "1"})),
            ("DeleteLink", "gensyn", pb.LinkConfig(link_id="r18")),
            ("BuildImage", "modal", pb.BuildImageRequest(name="default", pip=["rtdemo==1.0"], replace=True)),
            ("DeleteImage", "modal", pb.ImageRef(image="default")),
            ("Shutdown", "gensyn", pb.ShutdownRequest()),
        ]:
            attack("r18-2", f"{rpc} to {provider} through the bridge, from a member's connection (host a)",
                   "PERMISSION_DENIED, the daemon untouched", _bridge_rpc(lab, provider, rpc, request))
        attack("r18-2", "host serve --host-id c with host a's credential (claim an id that is not its own)",
               "refused: a host's id is its credential's", lambda: _claim_other_id(lab))
        attack("r18-2", "lattice serve --listen 0.0.0.0:PORT with no credentials and no TLS",
               "refused before it listens", lambda: _serve_open(lab))
        attack("r18-4", "a member subscribes to worldrt.rpc.> and the callers' inboxes and answers every call first; "
                        "10 Execute calls by another host", "10/10 real answers, nothing read",
               lambda: _spy_and_forge(lab))
        attack("r18-10", "lattice status with a token over nats:// to a server off loopback (a namespace's 198.18.x.1)",
               "refused before anything is sent", lambda: _cleartext_off_loopback(lab))
        attack("r18-10", "lattice status with a token to a tls:// URL whose server offers no TLS (downgrade)",
               "no token sent: TLS starts first", lambda: _downgrade(lab))
        attack("r18-12", "a member purges WORLDRT_INVOCATIONS_default", "refused", _streams(lab, "purge"))
        attack("r18-12", "a member publishes a forged row for host b (WEV 1e9) to the invocations stream", "refused",
               _streams(lab, "row"))
        attack("r18-12", "a member overwrites host b's key in the hosts bucket", "refused", _streams(lab, "key"))
        attack("r18-12", "a member puts its own key with Nats-Rollup: all (erasing every key of the bucket)", "refused",
               _streams(lab, "rollup"))
        attack("r18-14", "lattice status on a fresh lattice", "creates no bucket or stream",
               lambda: _status_makes_nothing(lab))


if __name__ == "__main__":
    import tempfile

    rows: list[tuple[str, str, str, bool, str]] = []

    def attack(finding: str, description: str, expected: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            blocked, observed = fn()
        except Exception as exc:  # noqa: BLE001 - a row, not a crash
            blocked, observed = False, f"attack crashed: {type(exc).__name__}: {_line(str(exc))}"
        rows.append((finding, description, expected, blocked, observed))
        print(f"{finding:7} {'BLOCKED' if blocked else 'THROUGH'}  {description}\n        expected: {expected}\n"
              f"        observed: {observed}", flush=True)

    with tempfile.TemporaryDirectory(prefix="worldrt-r18-access-") as tmp:
        run_attacks(attack, pathlib.Path(tmp))
    print(f"{sum(r[3] for r in rows)} of {len(rows)} blocked")
