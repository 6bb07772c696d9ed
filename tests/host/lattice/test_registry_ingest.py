"""The lattice's one registry takes every real row once and no forged one, and its streams are bounded.

A real ``worldrt lattice serve`` on loopback, a real ``worldrt registry serve`` writing a DuckDB file, and a
real host ``h1`` running modal whose component calls make the rows. The attacker is a bare nats-py client
with the lattice's credentials: it publishes poison records into a burst of real ones, records that claim
another host than the subject they come on, runs with a forged WEV, and fills a stream. The tests run in
file order (the last ones restart the registry with small limits and then read its file).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.js import api

from tests.host.lattice.loopback import LoopbackLattice, Served
from tests.support import built_example, cli, wait_for
from worldrt.host.lattice import Lattice
from worldrt.host.lattice._wire import invocations_stream, runs_stream
from worldrt.host.registry import Registry, parse_record
from worldrt.host.registry._redaction import Payload
from worldrt.v1 import host_pb, pb

pytestmark = [pytest.mark.daemons, pytest.mark.timeout(600)]
SMALL = 2 << 20
# The wire's names as the agreement between hosts and the registry spells them (host/lattice/_wire.py).
H_HOST, H_DEAD_REASON = "x-worldrt-host", "x-worldrt-deadletter-reason"


def deadletter_stream(lattice: str) -> str:
    return f"WORLDRT_DEADLETTER_{lattice}"

FEW = 60
REDELIVER_S = 3.0


class World:
    def __init__(self, root: Path, lattice: LoopbackLattice, registry: Served, host: Served, wasm: Path) -> None:
        self.root, self.lattice, self.registry, self.host = root, lattice, registry, host
        self.client: Lattice = lattice.client()
        self.component = host.stub.LoadComponent(host_pb.LoadComponentRequest(path=str(wasm))).component_id
        self.calls = 0

    def invoke(self, verse: int, calls: int) -> host_pb.InvokeOutcome:
        events = list(self.host.stub.Invoke(host_pb.InvokeRequest(
            component_id=self.component, verse_id=verse, args=json.dumps({"instance_id": "", "calls": calls})),
            timeout=600))
        outcome = next(e.outcome for e in events if e.HasField("outcome"))
        self.calls += outcome.provider_calls
        return outcome

    def rows(self, verse: int | None = None) -> int:
        reply = self.registry.stub.RecentInvocations(host_pb.RecentInvocationsRequest(
            limit=1_000_000, verse_id="" if verse is None else str(verse)), timeout=60)
        ids = [row.invocation_id for row in reply.invocations]
        assert len(ids) == len(set(ids)), "a row is doubled"
        return len(ids)

    def subject(self, kind: str) -> str:
        """Host h1's subject of the ``kind`` stream, as the stream binds it (the one subject of every host, on
        versions before records named their host: the attack then goes where that registry reads)."""
        stream = invocations_stream("default") if kind == "invocations" else runs_stream("default")
        bound = self.client.run(self.client.js.stream_info(stream)).config.subjects or []
        return bound[0].replace("*", "h1")

    def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.client.run(self.client.js.publish(subject, data, headers=headers, timeout=5))

    def dead_letters(self) -> list[Any]:
        async def read() -> list[Any]:
            try:
                info = await self.client.js.stream_info(deadletter_stream(self.client.name))
            except Exception:  # noqa: BLE001 - no dead-letter stream: none
                return []
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    found.append(await self.client.js.get_msg(deadletter_stream(self.client.name), seq))
                except Exception:  # noqa: BLE001 - a message dropped in between
                    continue
            return found
        return self.client.run(read())

    def dead_reason(self, data: bytes) -> str | None:
        # A stored message without data reads back with data None.
        return next(((m.headers or {}).get(H_DEAD_REASON) for m in self.dead_letters() if (m.data or b"") == data),
                    None)

    def in_hand(self, stream: str) -> bool:
        """Whether the registry has been handed messages it has not acknowledged."""
        info = self.consumer(stream)
        return bool(info.delivered and info.ack_floor and info.delivered.stream_seq > info.ack_floor.stream_seq)

    def consumer(self, stream: str) -> api.ConsumerInfo:
        return self.client.run(self.client.js.consumer_info(stream, "registry"))


def _records(root: Path, verse: str, n: int) -> list[bytes]:
    """``n`` journal records as a host publishes them (made by a real registry's call path)."""
    made: list[bytes] = []
    source = Registry.open(root / f"source-{verse}.duckdb")
    source.sink = lambda kind, ident, data: made.append(data)
    for i in range(n):
        source.record_call("modal", "execute", verse, pb.ExecuteRequest(code=f"print({i})"),
                           pb.ExecutionResult(stdout=f"{i}\n"), 1.0, 0.5, time.time())
    source.close()
    return made


def _run(run_id: str, wev: float) -> bytes:
    return json.dumps([run_id, "7", "inference", json.dumps(["morph", "primeintellect", "gensyn"]), json.dumps([1, 0, -1]),
                       0, True, False, 1.0, 1e9, wev, 0.5, 12.0, "2026-01-01T00:00:00", "ok", None]).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    wasm = built_example("caller")
    root = tmp_path_factory.mktemp("registry")
    lattice = LoopbackLattice(root)
    try:
        # A registry killed holding records is handed them again after REDELIVER_S, not the default 30 s.
        registry = lattice.registry(root / "registry", "--redeliver-after", str(REDELIVER_S))
        host = lattice.host(root / "h1", "h1", "modal")
        host.stub.PutLink(pb.LinkConfig(source_component="caller", interfaces=["generator"], target_provider="modal"),
                          timeout=60)
        yield World(root, lattice, registry, host, wasm)
        assert "Traceback" not in host.log(), host.log()[-4000:]
    finally:
        lattice.close()


def test_poison_records_in_a_burst_go_to_the_dead_letter_stream_and_every_real_row_lands(world: World) -> None:
    good = [parse_record(r) for r in _records(world.root, "poison", 3)]
    assert all(good)
    poison = {
        "a row of a provider the registry does not know": good[0]._replace(provider_id="nope").journal_record(),  # type: ignore[union-attr]
        "a row of another unknown provider": good[1]._replace(provider_id="nope2").journal_record(),  # type: ignore[union-attr]
        "a payload of a message type that does not exist": good[2]._replace(  # type: ignore[union-attr]
            input_params=Payload(b"pno.such.Message", b"\x08\x01")).journal_record(),
        "damaged bytes": b"WJr1" + b"\xff" * 40,
    }
    outcome: list[host_pb.InvokeOutcome] = []
    burst = threading.Thread(target=lambda: outcome.append(world.invoke(500, 202)))
    burst.start()
    try:
        wait_for(lambda: world.rows(500) >= 20, 120, "the burst's first rows")
        # The registry falls behind for a moment (busy, or stopped by a debugger), so that its next batch holds
        # many real rows, and each poison record lands among them.
        stream = invocations_stream("default")
        world.registry.proc.send_signal(signal.SIGSTOP)
        try:
            for i, data in enumerate(poison.values(), start=1):
                wait_for(lambda i=i: world.consumer(stream).num_pending >= 10 * i, 120, "real rows piling up")
                world.publish(world.subject("invocations"), data, {H_HOST: "h1"})
        finally:
            world.registry.proc.send_signal(signal.SIGCONT)
    finally:
        burst.join(600)
    assert outcome and outcome[0].ok and outcome[0].provider_calls == 202, outcome
    wait_for(lambda: world.rows(500) == 202, 120, "all 202 real rows of the burst in the registry")
    for what, data in poison.items():
        reason = wait_for(lambda data=data: world.dead_reason(data), 60, f"{what} in the dead-letter stream")
        assert reason, what
    assert "DuckDB refused it" in (world.dead_reason(poison["a row of a provider the registry does not know"]) or "")
    assert "cannot be read" in (world.dead_reason(poison["a payload of a message type that does not exist"]) or "")
    assert "not an intact invocation record" in (world.dead_reason(poison["damaged bytes"]) or "")
    # Every message is acknowledged (committed or dead-lettered), and what is acknowledged is purged.
    stream = invocations_stream("default")
    wait_for(lambda: world.consumer(stream).num_ack_pending == 0 and world.consumer(stream).num_pending == 0, 60,
             "every record acknowledged")
    assert world.rows(500) == 202


def test_a_record_naming_another_host_than_its_subject_is_refused(world: World) -> None:
    forged_row = _records(world.root, "forged", 1)[0]
    forged_run = _run("forged-run", 1e9)
    world.publish(world.subject("invocations"), forged_row, {H_HOST: "h2"})
    world.publish(world.subject("runs"), forged_run, {H_HOST: "evil"})
    unnamed = _run("unnamed-run", 1e9)
    world.publish(world.subject("runs"), unnamed, {})
    reason = wait_for(lambda: world.dead_reason(forged_row), 60, "the forged row in the dead-letter stream")
    assert "names host 'h2' but came on host 'h1'" in reason
    assert "names host 'evil'" in (wait_for(lambda: world.dead_reason(forged_run), 60, "the forged run dead") or "")
    assert "names no host" in (wait_for(lambda: world.dead_reason(unnamed), 60, "the unnamed run dead") or "")
    assert not list(world.registry.stub.RecentInvocations(host_pb.RecentInvocationsRequest(
        limit=1_000_000, verse_id="forged"), timeout=60).invocations)
    runs = json.loads(world.registry.stub.Analytics(host_pb.AnalyticsRequest(report="runs"), timeout=60).rows_json)
    assert not [r for r in runs if r["run_id"] in ("forged-run", "unnamed-run")]
    # The one subject older versions published to is no stream's any more.
    with pytest.raises(Exception, match="no response from stream|no responders"):
        world.publish("worldrt.registry.default.invocations", forged_row, {H_HOST: "h1"})


def test_a_record_dressed_as_a_server_status_is_taken_and_holds_nothing_back(world: World) -> None:
    # A member may set any header on what it publishes, a NATS status one included; the record must still
    # reach the registry and be acknowledged (a dead letter here), or the stream's ack floor stays under it
    # and nothing after it is ever purged.
    stream = invocations_stream("default")
    dressed = {"empty, 408": (b"", {H_HOST: "h1", "Status": "408", "Description": "Request Timeout"}),
               "bytes, 404": (b"WJr1-not-a-record", {H_HOST: "h1", "Status": "404"}),
               "bytes, 503": (b"WJr1-also-not", {H_HOST: "h1", "Status": "503", "Description": "No Responders"})}
    for data, headers in dressed.values():
        world.publish(world.subject("invocations"), data, headers)
    outcome = world.invoke(600, 30)
    assert outcome.ok and outcome.provider_calls == 30, outcome
    wait_for(lambda: world.rows(600) == 30, 120, "the 30 rows published after the dressed records")
    for what, (data, _) in dressed.items():
        reason = wait_for(lambda data=data: world.dead_reason(data), 60, f"the record ({what}) in the dead-letter stream")
        assert "not an intact invocation record" in reason, what
    wait_for(lambda: world.consumer(stream).num_ack_pending == 0 and world.consumer(stream).num_pending == 0, 60,
             "every record acknowledged")
    state = world.client.run(world.client.js.stream_info(stream)).state
    wait_for(lambda: world.client.run(world.client.js.stream_info(stream)).state.messages == 0, 60,
             f"the stream purged (it holds {state.messages})")


def test_a_registry_sigkilled_mid_burst_loses_no_row(world: World) -> None:
    # Bursts go on until the registry has restarted, so there are always rows to hand it and to pile up.
    outcomes: list[host_pb.InvokeOutcome] = []
    bursting = threading.Event()
    bursting.set()

    def burst() -> None:
        while bursting.is_set() or not outcomes:
            outcomes.append(world.invoke(700, 100))

    assert world.consumer(invocations_stream("default")).config.ack_wait == REDELIVER_S
    thread = threading.Thread(target=burst)
    thread.start()
    try:
        wait_for(lambda: world.rows(700) >= 40, 120, "the burst's first rows")
        # Killed with a batch in its hands: messages delivered to it and not yet acknowledged. A registry
        # stopped between two fetches holds nothing (its pull expires), so it is let go on and stopped again,
        # once it writes again: stopped that long, the server has dropped its connection as stale, and
        # stopped again at once it would never reconnect, pull or be handed anything.
        deadline = time.monotonic() + 120
        while True:
            world.registry.proc.send_signal(signal.SIGSTOP)
            try:
                wait_for(lambda: world.in_hand(invocations_stream("default")), 3,
                         "rows delivered to the registry and not yet acknowledged")
                break
            except AssertionError as exc:
                if time.monotonic() > deadline:
                    info = world.consumer(invocations_stream("default"))
                    raise AssertionError(f"{exc}; in 120 s of tries the burst made {len(outcomes)} invocation(s), "
                                         f"thread alive: {thread.is_alive()}; the consumer: delivered "
                                         f"{info.delivered}, ack floor {info.ack_floor}, pending "
                                         f"{info.num_pending}, unacknowledged {info.num_ack_pending}, waiting "
                                         f"pulls {info.num_waiting}") from exc
                world.registry.proc.send_signal(signal.SIGCONT)
                written = world.rows(700)
                wait_for(lambda: world.rows(700) > written, 60, "the registry writing again after its stop")
        world.registry.kill()
        wait_for(lambda: world.client.run(world.client.js.stream_info(invocations_stream("default"))).state.messages
                 >= 20, 120, "rows piling up while the registry is dead")
        world.registry.start()
    finally:
        bursting.clear()
        thread.join(600)
    assert outcomes and all(o.ok and o.provider_calls == 100 for o in outcomes), outcomes
    total = 100 * len(outcomes)
    wait_for(lambda: world.rows(700) == total, 120, f"all {total} rows after the registry's SIGKILL and restart")
    wait_for(lambda: world.rows() == world.calls, 60, f"{world.calls} rows in all")


def test_streams_are_bounded_and_a_full_stream_refuses_new_records_which_wait_in_the_outbox(world: World) -> None:
    world.registry.stop()
    world.registry.args += ["--stream-max-bytes", str(SMALL), "--stream-max-msgs", str(FEW), "--redeliver-after", "4"]
    world.registry.start()
    # The consumer the first registry made takes the new registry's redelivery wait.
    assert world.consumer(invocations_stream("default")).config.ack_wait == 4.0
    for stream in (invocations_stream("default"), runs_stream("default"), deadletter_stream("default")):
        config = world.client.run(world.client.js.stream_info(stream)).config
        assert config.max_bytes > 0 and config.max_msgs > 0 and config.max_msg_size > 0, config
    config = world.client.run(world.client.js.stream_info(invocations_stream("default"))).config
    assert (config.max_bytes, config.max_msgs, config.discard) == (SMALL, FEW, api.DiscardPolicy.NEW)
    # What earlier tests left in the stream is taken (and purged) first: the junk below must meet the byte
    # bound, not a count already reached by records the registry had not yet taken when it was restarted.
    wait_for(lambda: world.client.run(world.client.js.stream_info(invocations_stream("default"))).state.messages == 0,
             60, "the registry took every record the stream held")
    world.registry.stop()
    before = world.client.run(world.client.js.stream_info(invocations_stream("default"))).state
    junk, published, refused = b"x" * (64 << 10), 0, ""
    for _ in range(200):  # 12.5 MiB at most: the stream must refuse long before
        try:
            world.publish(world.subject("invocations"), junk, {H_HOST: "h1"})
        except Exception as exc:  # noqa: BLE001 - the refusal this test waits for
            refused = str(exc)
            break
        published += 1
    assert "maximum bytes" in refused and published * len(junk) <= SMALL, (published, refused)
    state = world.client.run(world.client.js.stream_info(invocations_stream("default"))).state
    # Nothing unread was discarded to make room: the stream holds what it held and every junk record it took.
    assert state.bytes <= SMALL and state.messages == before.messages + published
    assert state.first_seq == (before.first_seq if before.messages else state.first_seq)
    for _ in range(FEW):  # small ones fill it up to its count of messages
        try:
            world.publish(world.subject("invocations"), b"x", {H_HOST: "h1"})
        except Exception as exc:  # noqa: BLE001 - the refusal this test waits for
            assert "maximum messages" in str(exc), exc
            break
    else:
        raise AssertionError(f"the stream took more than {FEW} messages")
    outcome = world.invoke(800, 3)
    assert outcome.ok
    outbox = world.host.home / "lattice-outbox"
    wait_for(lambda: len([p for p in outbox.glob("invocations.*") if not p.name.endswith(".tmp")]) >= 3, 30,
             "the refused rows waiting in the host's outbox")
    world.registry.start()
    wait_for(lambda: world.rows(800) == 3, 120, "the outbox's rows in the registry once it drained the stream")
    wait_for(lambda: world.rows() == world.calls, 60, f"{world.calls} rows in all")


def test_every_row_carries_the_host_that_wrote_it(world: World) -> None:
    world.registry.stop()
    with duckdb.connect(str(world.registry.home / "world.duckdb"), read_only=True) as con:
        hosts = con.execute("SELECT host_id, count(*) FROM provider_invocations GROUP BY host_id").fetchall()
        runs = con.execute("SELECT count(*) FROM pipeline_runs WHERE run_id IN ('forged-run', 'unnamed-run')").fetchone()
    assert hosts == [("h1", world.calls)] and runs == (0,)
    world.registry.start()


@pytest.mark.parametrize("wait", ["0", "-1", "soon", "nan", "1e9"])
def test_a_redelivery_wait_that_is_not_a_few_seconds_is_refused_before_anything_starts(tmp_path: Path,
                                                                                       wait: str) -> None:
    out = cli(tmp_path, "registry", "serve", "--lattice", "nats://198.18.0.1:4222", "--redeliver-after", wait,
              timeout=60)
    assert out.returncode == 2 and f"{wait!r} is not a number of seconds" in out.stderr, out.stderr
