"""Issue 18's attacks on the lattice's data: links that name host files (#3), forged and lost registry rows
(#6), and unbounded streams (the limits half of #12), made as an attacker holding the lattice's credentials
makes them: a bare nats-py client writing into the links bucket and publishing to the registry's streams.

Everything runs on loopback under the ``tmp`` folder given: ``worldrt lattice serve``, ``worldrt registry
serve`` (a real DuckDB file), real ``worldrt host serve --lattice`` hosts (a fresh pure-caller host per link
attack, under an RLIMIT_DATA of 3 GiB so a version that reads /dev/zero fails alone; a host running modal
for the registry's rows). It runs against older versions too: where they lack a flag or a subject, the
attack falls back to what they have and is reported as not blocked. Registry rows lost are counted (and
said in the observation as ``rows lost N``): the target is 0.

    .venv/bin/python bench/attacks_r18_latticedata.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import built_example, host_channel, processes_under, rss_mib, wait_gone
from worldrt.host.lattice import Lattice, LatticeOptions
from worldrt.host.lattice._wire import invocations_stream, link_key, links_bucket, runs_stream
from worldrt.host.registry import Registry, parse_record
from worldrt.providers.testing import wait_serving
from worldrt.v1 import host_pb, host_rpc, pb

Attack = Callable[[str, str, str, Callable[[], tuple[bool, str]]], None]
TOKEN = "r18-latticedata-token"
NAME = "default"
# The wire's names as hosts and the registry agree on them (host/lattice/_wire.py of the fixed version).
H_HOST, H_DEAD_REASON = "x-worldrt-host", "x-worldrt-deadletter-reason"
DEADLETTERS = f"WORLDRT_DEADLETTER_{NAME}"
FLOOD_LIMIT = 64 << 20
FLOOD_MAX = 160 << 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WORLDRT_LATTICE", "WORLDRT_SECRETS")) and k not in ("WORLDRT_TOKEN", "WORLDRT_DB")}
    return {**env, "WORLDRT_LATTICE_TOKEN": TOKEN, "WORLDRT_STATE_DIR": str(home)}


def _wait(condition: Callable[[], Any], timeout_s: float) -> Any:
    """The first true value of ``condition`` within ``timeout_s`` (None when there was none)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - a process not up yet: ask again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


class Served:
    """A ``worldrt ... serve`` that answers worldrt.v1.Host at ``unix:HOME/host.sock``."""

    def __init__(self, home: Path, args: list[str], data_limit: int | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home, self.args, self.data_limit = home, args, data_limit
        self.log_path = home / "serve.log"
        self.start()

    def start(self) -> None:
        argv = [sys.executable, "-m", "worldrt.host.cli", *self.args]
        if self.data_limit:
            argv = ["prlimit", f"--data={self.data_limit}:{self.data_limit}", "--", *argv]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.home, env=_env(self.home), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        try:
            wait_serving(f"unix:{self.home / 'host.sock'}", timeout_s=120, proc=self.proc, log_path=self.log_path)
        except BaseException:
            self.kill()
            raise
        token = (self.home / "host.token").read_text().strip()
        self.stub = host_rpc.HostStub(host_channel(f"unix:{self.home / 'host.sock'}", token))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        tree = processes_under(str(self.home))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(30)
        wait_gone(tree)

    def stop(self) -> None:
        tree = processes_under(str(self.home))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        wait_gone(tree)

    def links(self) -> dict[str, dict[str, str]]:
        reply = self.stub.ListLinks(host_pb.ListLinksRequest(), timeout=30)
        return {link.link_id: dict(link.secrets) for link in reply.links}


class Bench:
    def __init__(self, tmp: Path, stack: ExitStack) -> None:
        self.tmp, self.stack = tmp, stack
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        log_path = tmp / "lattice.log"
        with open(log_path, "ab") as log:
            self.server = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "lattice", "serve", "--listen",
                                            f"127.0.0.1:{self.port}", "--store", str(tmp / "store")], cwd=tmp,
                                           env=_env(tmp), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        stack.callback(self._stop_server)
        if not _wait(lambda: "lattice serving" in log_path.read_text() or self.server.poll() is not None, 60) \
                or self.server.poll() is not None:
            raise RuntimeError(f"lattice serve did not start: {log_path.read_text()[-2000:]}")
        self.client = Lattice(LatticeOptions(self.url, name=NAME, token=TOKEN), client_name="attacker")
        stack.callback(lambda: self.client.close(drain=False))
        self.hosts = 0

    def _stop_server(self) -> None:
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(30)

    def serve(self, home: Path, args: list[str], data_limit: int | None = None) -> Served:
        served = Served(home, args, data_limit)
        self.stack.callback(served.stop)
        return served

    def host(self, providers: str = "", data_limit: int | None = 3 << 30) -> Served:
        self.hosts += 1
        host_id = f"h{self.hosts}"
        extra = ["--providers", providers] if providers else []
        return self.serve(self.tmp / host_id, ["host", "serve", "--lattice", self.url, "--host-id", host_id, *extra],
                          data_limit)

    def put_link(self, link_id: str, **extra: object) -> None:
        document = {"link_id": link_id, "source_component": link_id.split("/", 1)[0], "interfaces": ["generator"],
                    "target_provider": "modal", "name": "default", "values": {}, **extra}

        async def put() -> None:
            kv = await self.client.js.key_value(links_bucket(NAME))
            await kv.put(link_key(link_id), json.dumps(document).encode())
        self.client.run(put())

    def delete_links(self, *link_ids: str) -> None:
        async def delete() -> None:
            kv = await self.client.js.key_value(links_bucket(NAME))
            for link_id in link_ids:
                await kv.delete(link_key(link_id))  # buckets refuse roll-ups (purge is one)
        self.client.run(delete())

    def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.client.run(self.client.js.publish(subject, data, headers=headers, timeout=5))

    def subject(self, stream: str, host: str) -> str:
        """Host ``host``'s subject of ``stream`` as the stream binds it (older versions: the one shared subject)."""
        bound = self.client.run(self.client.js.stream_info(stream)).config.subjects or []
        return bound[0].replace("*", host)


# links (#3) ----------------------------------------------------------------------------------------------
def _link_attack(bench: Bench, n: int, secrets: Callable[[Served], dict[str, object]],
                 refused_if: Callable[[Served, str], bool]) -> tuple[bool, str]:
    """Put a hostile link, then a plain one: blocked when the host is alive, small, went on to the plain link,
    said it refused the hostile one and did not take it as it was meant (``refused_if``). Both links are
    deleted afterwards (a hostile link left in the bucket would hit every host that starts later)."""
    host = bench.host()
    evil, after = f"evil{n}/generator/default", f"after{n}/generator/default"
    try:
        bench.put_link(evil, **secrets(host))
        bench.put_link(after)
        went_on = _wait(lambda: after in host.links(), 30)
        alive = host.proc.poll() is None
        rss = rss_mib(host.proc.pid) if alive else 0.0
        refused = alive and refused_if(host, evil)
        log = host.log()
        said = [line for line in log.splitlines() if "refusing the link" in line and link_key(evil) in line]
        crashed = "MemoryError" if "MemoryError" in log else "a traceback" if "Traceback" in log else ""
        observed = (f"host {'alive' if alive else 'DEAD'}, RSS {rss:.0f} MiB, later link "
                    f"{'applied' if went_on else 'NOT applied (watcher stuck)'}, hostile link "
                    f"{'not taken' if refused else 'taken'}, {'refusal logged' if said else 'no refusal logged'}"
                    + (f" ({said[-1].split(': ', 1)[-1][:150]})" if said else "")
                    + (f"; the host's log has {crashed}" if crashed else ""))
        return bool(alive and went_on and refused and said and rss < 1024), observed
    finally:
        bench.delete_links(evil, after)
        host.stop()


def _absent(host: Served, link_id: str) -> bool:
    return link_id not in host.links()


def _no_short_secret(host: Served, link_id: str) -> bool:
    return host.links().get(link_id) != {"api": "<redacted>"}


def link_attacks(attack: Attack, bench: Bench) -> None:
    fifo = bench.tmp / "fifo"
    os.mkfifo(fifo)
    huge = bench.tmp / "huge"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)
    short = bench.tmp / "short"
    short.write_text("a\n")
    cases: list[tuple[str, Callable[[Served], dict[str, object]], Callable[[Served, str], bool]]] = [
        ("a bucket link naming /dev/zero as a secret file", lambda h: {"secret_files": {"api": "/dev/zero"}}, _absent),
        ("a bucket link naming a FIFO as a secret file", lambda h: {"secret_files": {"api": str(fifo)}}, _absent),
        ("a bucket link naming a 1 GiB file as a secret file", lambda h: {"secret_files": {"api": str(huge)}},
         _absent),
        ("a bucket link naming a one-byte file as a secret file", lambda h: {"secret_files": {"api": str(short)}},
         _no_short_secret),
        ("a bucket link whose secret key is a path to /dev/zero",
         lambda h: {"secret_keys": {"api": "../../../../../../dev/zero"}}, _absent),
        ("a bucket link whose secret key names a one-byte file in the host's secrets folder",
         _short_key, _absent),
    ]
    for n, (description, secrets, refused_if) in enumerate(cases):
        attack("r18-3", description, "the host refuses that link with a log line, stays small and applies the next "
               "link", lambda n=n, s=secrets, r=refused_if: _link_attack(bench, n, s, r))

    def short_at_put() -> tuple[bool, str]:
        home = bench.tmp / "one-machine"
        home.mkdir(exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "worldrt.host.cli", "link", "put", "generator=modal", "--source",
                               "caller", "--secret-file", f"api={short}"], cwd=home, env=_env(home), text=True,
                              capture_output=True, timeout=300)
        said = (done.stderr.strip().splitlines() or [""])[-1][:200]
        return done.returncode != 0 and "8" in done.stderr, f"exit {done.returncode}: {said}"

    attack("r18-3", "worldrt link put --secret-file with a one-byte secret (one machine)",
           "refused at put: INVALID_ARGUMENT naming the 8-byte minimum", short_at_put)


def _short_key(host: Served) -> dict[str, object]:
    folder = host.home / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "short-key").write_text("a\n")
    return {"secret_keys": {"api": "short-key"}}


# registry (#6) and stream limits (#12) ------------------------------------------------------------------
class Rows:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        home = bench.tmp / "registry"
        args = ["registry", "serve", "--lattice", bench.url, "--db", str(home / "world.duckdb")]
        limits = ["--stream-max-bytes", str(FLOOD_LIMIT)]
        try:
            self.registry = bench.serve(home, args + limits)
            self.limited = True
        except Exception:  # noqa: BLE001 - a version without the flag: its defaults
            self.registry = bench.serve(home, args)
            self.limited = False
        self.host = bench.host("modal", data_limit=None)
        self.host_id = self.host.args[self.host.args.index("--host-id") + 1]
        self.host.stub.PutLink(pb.LinkConfig(source_component="caller", interfaces=["generator"],
                                             target_provider="modal"), timeout=120)
        self.component = self.host.stub.LoadComponent(host_pb.LoadComponentRequest(
            path=str(built_example("caller"))), timeout=300).component_id

    def invoke(self, verse: int, calls: int) -> int:
        events = list(self.host.stub.Invoke(host_pb.InvokeRequest(
            component_id=self.component, verse_id=verse, args=json.dumps({"instance_id": "", "calls": calls})),
            timeout=900))
        return int(next(e.outcome for e in events if e.HasField("outcome")).provider_calls)

    def rows(self, verse: str) -> int:
        reply = self.registry.stub.RecentInvocations(host_pb.RecentInvocationsRequest(limit=1_000_000, verse_id=verse),
                                                     timeout=60)
        return len({row.invocation_id for row in reply.invocations})

    def in_hand(self) -> bool:
        """Whether the registry holds rows it was handed and has not acknowledged."""
        consumer = self.consumer()
        return bool(consumer.delivered.stream_seq > consumer.ack_floor.stream_seq)

    def consumer(self) -> Any:
        return self.bench.client.run(self.bench.client.js.consumer_info(invocations_stream(NAME), "registry"))

    def records(self, verse: str, n: int) -> list[bytes]:
        made: list[bytes] = []
        source = Registry.open(self.bench.tmp / f"source-{verse}.duckdb")
        source.sink = lambda kind, ident, data: made.append(data)
        for i in range(n):
            source.record_call("modal", "execute", verse, pb.ExecuteRequest(code=f"print({i})"),
                               pb.ExecutionResult(stdout=f"{i}\n"), 1.0, 0.5, time.time())
        source.close()
        return made

    def burst(self, verse: int, calls: int, during: Callable[[], None]) -> tuple[int, int]:
        """``calls`` real calls, ``during`` done meanwhile; (calls made, rows the registry has in the end)."""
        made: list[int] = []
        thread = threading.Thread(target=lambda: made.append(self.invoke(verse, calls)))
        thread.start()
        try:
            during()
        finally:
            thread.join(900)
        total = made[0] if made else 0
        _wait(lambda: self.rows(str(verse)) >= total, 120)
        return total, self.rows(str(verse))


def registry_attacks(attack: Attack, bench: Bench) -> None:
    rows = Rows(bench)
    verses = iter(range(900, 1000))

    def forged_row() -> tuple[bool, str]:
        verse = str(next(verses))
        data = rows.records(verse, 1)[0]
        try:
            bench.publish(bench.subject(invocations_stream(NAME), rows.host_id), data, {H_HOST: "someone-else"})
        except Exception as exc:  # noqa: BLE001 - the stream refused it outright
            return True, f"publish refused: {exc}"
        rows.invoke(int(next(verses)), 1)  # a real row after it: the forged one was dealt with before
        _wait(lambda: rows.rows(verse), 10)
        found = rows.rows(verse)
        return found == 0, f"forged rows in the registry: {found}"

    attack("r18-6", "a bare client publishes a row on a host's subject claiming another host",
           "dead-lettered (host disagrees with subject); never a row", forged_row)

    def forged_run() -> tuple[bool, str]:
        run = json.dumps(["forged-run-r18", "7", "inference", json.dumps(["morph", "primeintellect", "gensyn"]),
                          json.dumps([1, 0, -1]), 0, True, False, 1.0, 1e9, 1e9, 0.5, 12.0, "2026-01-01T00:00:00",
                          "ok", None]).encode()
        try:
            bench.publish(bench.subject(runs_stream(NAME), rows.host_id), run, {H_HOST: "someone-else"})
        except Exception as exc:  # noqa: BLE001 - the stream refused it outright
            return True, f"publish refused: {exc}"

        def listed() -> bool:
            reply = rows.registry.stub.Analytics(host_pb.AnalyticsRequest(report="runs"), timeout=60)
            return any(r["run_id"] == "forged-run-r18" for r in json.loads(reply.rows_json))
        dead = _wait(lambda: _dead_reason(bench, run), 15)
        shown = listed()
        return not shown, f"forged WEV 1e9 run in analytics: {'yes' if shown else 'no'}; dead letter: {dead or 'none'}"

    attack("r18-6", "a bare client publishes a run with WEV 1e9 claiming another host",
           "dead-lettered; not in analytics", forged_run)

    def poison() -> tuple[bool, str]:
        verse = next(verses)
        good = [parse_record(r) for r in rows.records(f"p{verse}", 2)]
        records = [good[0]._replace(provider_id="nope").journal_record(),  # type: ignore[union-attr]
                   good[1]._replace(provider_id="nope2").journal_record()]  # type: ignore[union-attr]

        def during() -> None:
            _wait(lambda: rows.rows(str(verse)) >= 20, 120)
            rows.registry.proc.send_signal(signal.SIGSTOP)  # it falls behind: its next batch holds many rows
            try:
                for i, data in enumerate(records, start=1):
                    _wait(lambda i=i: rows.consumer().num_pending >= 10 * i, 120)
                    bench.publish(bench.subject(invocations_stream(NAME), rows.host_id), data, {H_HOST: rows.host_id})
            finally:
                rows.registry.proc.send_signal(signal.SIGCONT)
        made, landed = rows.burst(verse, 202, during)
        dead = sum(1 for data in records if _wait(lambda d=data: _dead_reason(bench, d), 15))
        lost = made - landed
        return lost == 0 and made == 202, (f"rows lost {lost} of {made}; poison records in the dead-letter stream: "
                                           f"{dead} of {len(records)}")

    attack("r18-6", "two poison records (unknown provider) among a 202-call burst",
           "every real row lands (rows lost 0); the poison ones go to the dead-letter stream", poison)

    def sigkill() -> tuple[bool, str]:
        verse = next(verses)

        def during() -> None:
            _wait(lambda: rows.rows(str(verse)) >= 40, 120)
            rows.registry.proc.send_signal(signal.SIGSTOP)
            _wait(rows.in_hand, 30)
            rows.registry.kill()
            _wait(lambda: bench.client.run(bench.client.js.stream_info(invocations_stream(NAME))).state.messages
                  >= 20, 60)
            rows.registry.start()
        made, landed = rows.burst(verse, 300, during)
        lost = made - landed
        return lost == 0 and made == 300, f"rows lost {lost} of {made}"

    attack("r18-6", "SIGKILL of registry serve with rows in its hands, mid 300-call burst",
           "redelivered after restart: rows lost 0, none doubled", sigkill)

    def flood() -> tuple[bool, str]:
        info = bench.client.run(bench.client.js.stream_info(invocations_stream(NAME)))
        config = info.config
        limits = f"max_bytes {config.max_bytes}, max_msgs {config.max_msgs}, max_msg_size {config.max_msg_size}, " \
                 f"discard {getattr(config.discard, 'value', config.discard)}"
        rows.registry.stop()  # nothing drains the stream meanwhile
        junk, sent, refused = b"x" * (512 << 10), 0, ""
        started = time.monotonic()
        try:
            while sent < FLOOD_MAX:
                try:
                    bench.publish(bench.subject(invocations_stream(NAME), rows.host_id), junk, {H_HOST: rows.host_id})
                except Exception as exc:  # noqa: BLE001 - the refusal
                    refused = str(exc)
                    break
                sent += len(junk)
            took = time.monotonic() - started
            bounded = all(v is not None and v > 0 for v in (config.max_bytes, config.max_msgs, config.max_msg_size))
            new = getattr(config.discard, "value", config.discard) == "new"
            observed = (f"{limits}; took {sent >> 20} MiB in {took:.1f} s, "
                        + (f"then refused: {refused[:80]}" if refused else "never refused"))
            return bool(bounded and new and refused and sent <= max(config.max_bytes or 0, 0)), observed
        finally:
            rows.registry.start()

    attack("r18-12", f"a bare client publishes 512 KiB records into the invocations stream (up to {FLOOD_MAX >> 20} MiB)",
           "bounded (max_bytes, max_msgs, max_msg_size set); a full stream refuses, never drops unread rows", flood)


def _dead_reason(bench: Bench, data: bytes) -> str | None:
    async def find() -> str | None:
        try:
            info = await bench.client.js.stream_info(DEADLETTERS)
        except Exception:  # noqa: BLE001 - no dead-letter stream at all
            return None
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await bench.client.js.get_msg(DEADLETTERS, seq)
            except Exception:  # noqa: BLE001 - dropped in between
                continue
            if msg.data == data:
                return (msg.headers or {}).get(H_DEAD_REASON)
        return None
    return bench.client.run(find())


def run_attacks(attack: Attack, tmp: Path) -> None:
    with ExitStack() as stack:
        bench = Bench(tmp, stack)
        link_attacks(attack, bench)
        registry_attacks(attack, bench)


if __name__ == "__main__":
    def show(finding: str, description: str, expected: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            blocked, observed = fn()
        except Exception as exc:  # noqa: BLE001 - an attack that crashed is reported, not blocked
            blocked, observed = False, f"the attack crashed: {type(exc).__name__}: {exc}"
        print(f"{finding:7} {'BLOCKED' if blocked else 'NOT BLOCKED':12} {description}\n"
              f"        expected: {expected}\n        observed: {observed}", flush=True)

    with tempfile.TemporaryDirectory(prefix="r18-latticedata-") as folder:
        run_attacks(show, Path(folder))
