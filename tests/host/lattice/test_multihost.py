"""Many machines: a hub (nats-server and the one registry) and three hosts in network namespaces.

A is a pure caller (it runs no provider), B runs morph and modal, C runs modal, primeintellect and ritual.
The test process is one more machine on the lattice (it calls providers directly through a Caller, as
the caller identity t, and puts links as admin). The lattice runs as it must off loopback: identities and
TLS (tests/host/lattice/secure.py). The tests run in file order: the failover ones at the end kill, stop
and cut replicas and bring them back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import nats
import nats.errors
import pytest

from tests.host.lattice.netns import Served, Topology, make_topology, skip_unless_root
from tests.support import built_example, cmdlines, processes_under, wait_for
from worldrt.errors import Reason, ResourceExhausted, Unavailable
from worldrt.host.lattice import Caller, Lattice, LatticeError, LatticeOptions, put_link
from worldrt.host.routing import METHODS, HostLink
from worldrt.v1 import host_pb, host_rpc, pb

pytestmark = [pytest.mark.daemons, pytest.mark.timeout(300)]


class World:
    def __init__(self, topology: Topology, hosts: dict[str, Served], registry: Served, lattice: Lattice,
                 caller: Caller, admin: Lattice, wasm: Path) -> None:
        self.topology, self.hosts, self.registry, self.lattice, self.caller = topology, hosts, registry, lattice, caller
        self.admin = admin
        self.wasm = wasm
        self.calls = 0  # every provider call a host's component made: the rows the registry must hold

    def link(self, host: str, provider: str) -> None:
        """Link the caller component's generator to ``provider`` (as admin: hosts may not write links) and
        wait until ``host`` has it."""
        link = HostLink("caller/generator/default", "caller", ("generator",), provider)
        self.admin.run(put_link(self.admin, link, {}))

        def target() -> str:
            links = self.hosts[host].stub.ListLinks(host_pb.ListLinksRequest(), timeout=10).links
            return next((x.target_provider for x in links if x.link_id == link.link_id), "")

        wait_for(lambda: target() == provider, 30, f"host {host} linked to {provider}")

    def call(self, provider: str, rpc: str, request: object, timeout_s: float = 30.0,
             on_event: object = None) -> tuple[grpc.StatusCode, str, object, str]:
        method = METHODS[rpc]
        from worldrt.host.lattice._calls import bound_of
        from worldrt.host.lattice._wire import first_id, replicas_named
        bound = bound_of(replicas_named(request), first_id(request), provider, rpc)  # type: ignore[arg-type]
        answer = self.lattice.run(self.caller.call(provider, method, request.SerializeToString(),  # type: ignore[attr-defined]
                                                   [("x-worldrt-verse-id", "1"), ("x-worldrt-source", "test")],
                                                   timeout_s, bound=bound, on_event=on_event), timeout_s + 20)
        reply = method.reply.FromString(answer.data) if answer.code == grpc.StatusCode.OK else None
        return answer.code, answer.message, reply, answer.replica

    def invoke(self, host: str, verse: int, spec: dict[str, object], link: str | None = None) -> tuple[
            host_pb.InvokeOutcome, list[host_pb.InvokeEvent]]:
        stub = self.hosts[host].stub
        if link is not None:
            self.link(host, link)
        component = stub.LoadComponent(host_pb.LoadComponentRequest(path=str(self.wasm))).component_id
        events = list(stub.Invoke(host_pb.InvokeRequest(component_id=component, verse_id=verse,
                                                        args=json.dumps(spec)), timeout=300))
        outcome = next(e.outcome for e in events if e.HasField("outcome"))
        self.calls += outcome.provider_calls
        return outcome, [e for e in events if e.HasField("call")]

    def rows(self, verse: int | None = None) -> int:
        stub = host_rpc.HostStub(self.registry.channel)
        reply = stub.RecentInvocations(host_pb.RecentInvocationsRequest(
            limit=1_000_000, verse_id="" if verse is None else str(verse)), timeout=30)
        ids = [row.invocation_id for row in reply.invocations]
        assert len(ids) == len(set(ids))
        return len(ids)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    skip_unless_root()
    wasm = built_example("caller")
    topology = make_topology(tmp_path_factory.mktemp("lattice"), ["a", "b", "c"],
                             {"a": "", "b": "morph,modal", "c": "modal,primeintellect,ritual"})
    lattice: Lattice | None = None
    admin: Lattice | None = None
    try:
        topology.serve_lattice()
        registry = topology.registry()
        hosts = {"b": topology.host("b", "morph,modal"), "c": topology.host("c", "modal,primeintellect,ritual"),
                 "a": topology.host("a")}
        lattice = topology.connect()
        admin = topology.connect("admin", "test-admin")
        caller = lattice.run(Caller.open(lattice))
        yield World(topology, hosts, registry, lattice, caller, admin, wasm)
        for name, host in hosts.items():
            assert "Traceback" not in host.log(), f"host {name}:\n{host.log()[-4000:]}"
    finally:
        for connection in (lattice, admin):
            if connection is not None:
                connection.close()
        topology.close()


def _replicas(events: list[host_pb.InvokeEvent]) -> set[str]:
    return {e.call.provider_id for e in events}


def _status(world: World) -> dict[str, object]:
    done = world.topology.cli("a", "lattice", "status", "--lattice", world.topology.url, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _healthy(world: World, provider: str) -> set[str]:
    return set(world.lattice.run(world.caller.fresh_replicas(provider)))


def test_status_lists_every_host_and_replica(world: World) -> None:
    wait_for(lambda: _healthy(world, "modal") == {"b", "c"}, 30, "both modal replicas healthy")
    status = _status(world)
    assert {h["host_id"] for h in status["hosts"]} == {"a", "b", "c"}  # type: ignore[index]
    a = next(h for h in status["hosts"] if h["host_id"] == "a")  # type: ignore[index]
    assert a["providers"] == []
    providers = status["providers"]
    assert {r["replica"] for r in providers["modal"]} == {"b", "c"}  # type: ignore[index]
    assert [r["replica"] for r in providers["morph"]] == ["b"]  # type: ignore[index]


def test_off_loopback_only_identities_over_tls_reach_the_lattice(world: World) -> None:
    """From another machine: no credential, no connection; no credential in cleartext; a member neither
    reads other calls nor reaches a daemon's lifecycle, links or image writes."""
    hub = world.topology.address(1)

    async def bare() -> str:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        try:
            nc = await nats.connect(f"nats://{hub}:4222", allow_reconnect=False, connect_timeout=5, error_cb=on_error)
        except (nats.errors.Error, OSError) as exc:
            return f"refused: {exc} {errors}"
        await nc.close()
        return "connected"

    assert asyncio.run(bare()).startswith("refused")
    with pytest.raises(LatticeError, match="refusing to send the lattice's credential in cleartext"):
        LatticeOptions(f"nats://{hub}:4222", creds=world.topology.ids.options("t", world.topology.url).creds)
    daemons = {pid for host in ("b", "c") for pid, line in cmdlines(processes_under(str(world.hosts[host].home))).items()
               if _provider_daemon(line)}

    async def spy() -> None:
        subscription = await world.lattice.nc.subscribe("worldrt.rpc.>", cb=_ignore)
        await world.lattice.nc.flush()
        await subscription.unsubscribe()

    world.lattice.run(spy())
    wait_for(lambda: any('"worldrt.rpc.>"' in v for v in world.lattice.violations), 10, "the spy refused")
    for rpc, request in (("Shutdown", pb.ShutdownRequest()), ("ReceiveLinkConfig", pb.LinkConfig()),
                         ("DeleteLink", pb.LinkConfig(link_id="x"))):
        for _ in range(4):  # any replica of modal: b's and c's
            code, message, _, _ = world.call("modal", rpc, request)
            assert code == grpc.StatusCode.PERMISSION_DENIED and "not carried over the lattice" in message
    after = {pid for host in ("b", "c") for pid, line in cmdlines(processes_under(str(world.hosts[host].home))).items()
             if _provider_daemon(line)}
    assert after == daemons


async def _ignore(msg: object) -> None:
    pass


def test_a_pure_caller_reaches_morph_on_another_host(world: World) -> None:
    outcome, calls = world.invoke("a", 101, {"instance_id": "new", "calls": 3}, link="morph")
    assert outcome.ok, outcome.value
    assert json.loads(outcome.value) == {"calls": 3}
    assert _replicas(calls) == {"morph@b"} and [c.call.operation for c in calls] == ["start", "execute", "execute",
                                                                                 "execute", "stop"]
    own = cmdlines(processes_under(str(world.hosts["a"].home)))
    assert not [line for line in own.values() if _provider_daemon(line)], "host a started a provider of its own"


def test_a_link_put_on_a_is_used_by_cs_next_call(world: World) -> None:
    for machine in ("b", "c"):  # each host that serves modal has its own file of the key
        (world.hosts[machine].home / "secrets").mkdir(mode=0o700, exist_ok=True)
        (world.hosts[machine].home / "secrets" / "modal-key").write_text("sk-lattice-secret\n")
    as_host = world.topology.cli("a", "link", "put", "generator=modal", "--source", "caller", "--lattice",
                                 world.topology.url, "--secret", "api_key=modal-key")
    assert as_host.returncode == 2 and "needs admin's" in as_host.stderr, as_host.stderr
    done = world.topology.cli("a", "link", "put", "generator=modal", "--source", "caller", "--lattice",
                              world.topology.url, "--secret", "api_key=modal-key", identity="admin")
    assert done.returncode == 0, done.stderr
    outcome, calls = world.invoke("c", 102, {"instance_id": "", "calls": 2})
    assert outcome.ok, outcome.value
    assert {c.split("@")[0] for c in _replicas(calls)} == {"modal"}
    listed = world.topology.cli("b", "link", "list", "--lattice", world.topology.url, "--json")
    assert "sk-lattice-secret" not in listed.stdout and "sk-lattice-secret" not in json.dumps(_status(world))
    links = json.loads(listed.stdout)["links"]
    assert links[0]["secret_keys"] == {"api_key": "modal-key"}
    assert [(x["link_id"], x["target_provider"]) for x in links] == [("caller/generator/default", "modal")]


def test_two_modal_replicas_share_the_calls(world: World) -> None:
    outcome, calls = world.invoke("a", 103, {"instance_id": "", "calls": 40}, link="modal")
    assert outcome.ok, outcome.value
    assert _replicas(calls) == {"modal@b", "modal@c"}


def test_an_instance_is_reached_from_a_host_that_never_saw_its_id(world: World) -> None:
    code, message, instance, replica = world.call("morph", "Start", pb.StartRequest())
    assert code == grpc.StatusCode.OK, message
    assert replica == "b" and instance.instance_id.endswith("@b")  # type: ignore[attr-defined]
    world.link("c", "morph")
    outcome, calls = world.invoke("c", 104, {"instance_id": instance.instance_id, "calls": 2})  # type: ignore[attr-defined]
    assert outcome.ok, outcome.value
    assert _replicas(calls) == {"morph@b"}
    code, message, _, _ = world.call("morph", "Stop", pb.InstanceRef(instance_id=instance.instance_id))  # type: ignore[attr-defined]
    assert code == grpc.StatusCode.OK, message


def test_files_and_images_reach_the_owner_of_an_instance_through_a_host_that_runs_no_morph(world: World) -> None:
    """C runs modal, primeintellect and ritual, not morph: its files and image calls for morph go over the
    lattice (the instance's to the replica that owns it), are recorded like any call, and start nothing on C."""
    code, message, instance, _ = world.call("morph", "Start", pb.StartRequest())
    assert code == grpc.StatusCode.OK, message
    iid = instance.instance_id  # type: ignore[attr-defined]
    assert iid.endswith("@b")
    c = world.hosts["c"].stub
    written = c.WriteFiles(host_pb.HostWriteFilesRequest(provider="morph", files=pb.WriteFilesRequest(
        instance_id=iid, files=[pb.FileEntry(path="notes/hello.txt", data=b"from c")])), timeout=60)
    assert written.files == 1
    chunks = list(c.ReadFile(host_pb.HostReadFileRequest(provider="morph", read=pb.ReadFileRequest(
        instance_id=iid, path="notes/hello.txt")), timeout=60))
    assert b"".join(chunk.data for chunk in chunks) == b"from c" and chunks[-1].eof
    listed = c.ListFiles(host_pb.HostListFilesRequest(provider="morph", list=pb.ListFilesRequest(
        instance_id=iid, path="notes")), timeout=60)
    assert [entry.path for entry in listed.entries] == ["notes/hello.txt"]
    events = list(c.BuildImage(host_pb.HostBuildImageRequest(provider="morph", build=pb.BuildImageRequest(
        name="from-c", files=[pb.FileEntry(path="conf.txt", data=b"c")])), timeout=300))
    image = next(e.image for e in events if e.HasField("image"))
    assert image.names == ["from-c"] and image.owners["from-c"] == "lattice"
    images = c.ListImages(host_pb.HostImageRequest(provider="morph"), timeout=60).images
    assert any("from-c" in i.names for i in images)
    world.calls += 5  # each of those calls is one row in the lattice's registry
    on_c = cmdlines(processes_under(str(world.hosts["c"].home)))
    assert not [line for line in on_c.values() if _provider_daemon(line, "morph")], "c started a morph daemon"
    assert not (world.hosts["c"].home / "providers" / "morph.sock").exists()

    def rows() -> list[host_pb.InvocationRow]:
        reply = host_rpc.HostStub(world.registry.channel).RecentInvocations(
            host_pb.RecentInvocationsRequest(limit=100), timeout=30)
        return [r for r in reply.invocations if r.provider_id == "morph"
                and r.operation in ("write-files", "read-file", "list-files", "build-image", "list-images")]

    wait_for(lambda: len(rows()) >= 5, 30, "the files and image calls' rows in the registry")
    assert {r.replica for r in rows()} == {"b"}
    code, message, _, _ = world.call("morph", "Stop", pb.InstanceRef(instance_id=iid))
    assert code == grpc.StatusCode.OK, message


def test_status_codes_messages_and_reasons_come_back_unchanged(world: World) -> None:
    code, message, _, replica = world.call("morph", "Execute", pb.ExecuteRequest(instance_id="nope@b", code="1"))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in message and "@b" not in message and replica == "b"
    answer = world.lattice.run(world.caller.call("morph", METHODS["Execute"], pb.ExecuteRequest(
        instance_id="nope", code="1").SerializeToString(), [], 30, bound=("b", "nope@b")), 50)
    assert answer.reason == Reason.INSTANCE_NOT_FOUND, answer


def test_execute_stream_crosses_hosts(world: World) -> None:
    events: list[bytes] = []
    code, message, _, replica = world.call(
        "modal", "ExecuteStream", pb.ExecuteRequest(code="for i in range(3):\n    print('line', i, flush=True)\n",
                                                    language="python", timeout_ms=20_000), on_event=events.append)
    assert code == grpc.StatusCode.OK, message
    assert replica in ("b", "c")
    parsed = [pb.ExecutionEvent.FromString(e) for e in events]
    assert "".join(e.stdout for e in parsed if e.HasField("stdout")).count("line") == 3
    assert any(e.HasField("result") for e in parsed)


def test_a_request_above_the_payload_limit_is_refused_naming_it(world: World) -> None:
    with pytest.raises(ResourceExhausted, match="payload limit of 1048576 bytes"):
        world.call("modal", "Execute", pb.ExecuteRequest(code="#" * 2_000_000))


def test_rows_of_two_hosts_land_once_in_one_registry(world: World) -> None:
    wait_for(lambda: world.rows() == world.calls, 30, f"{world.calls} rows in the registry")
    assert world.rows(101) == 5 and world.rows(102) == 2 and world.rows(103) == 40


def test_a_replica_killed_mid_200_calls_costs_none(world: World) -> None:
    c = world.hosts["c"]
    world.link("a", "modal")
    outcomes: list[host_pb.InvokeOutcome] = []
    seen_c = threading.Event()

    def run(verse: int) -> None:
        stub = world.hosts["a"].stub
        component = stub.LoadComponent(host_pb.LoadComponentRequest(path=str(world.wasm))).component_id
        for event in stub.Invoke(host_pb.InvokeRequest(component_id=component, verse_id=verse, args=json.dumps(
                {"instance_id": "", "calls": 50})), timeout=300):
            if event.HasField("call") and event.call.provider_id == "modal@c":
                seen_c.set()
            if event.HasField("outcome"):
                outcomes.append(event.outcome)

    threads = [threading.Thread(target=run, args=(200 + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    assert seen_c.wait(60), "no call reached modal on c"
    c.kill()
    try:
        for thread in threads:
            thread.join(300)
        world.calls += sum(o.provider_calls for o in outcomes)
        assert len(outcomes) == 4 and all(o.ok for o in outcomes), [o.value for o in outcomes]
        assert [json.loads(o.value) for o in outcomes] == [{"calls": 50}] * 4
    finally:
        c.start_again()
    wait_for(lambda: _healthy(world, "modal") == {"b", "c"}, 60, "the restarted replica c rejoins")
    wait_for(lambda: all(world.rows(200 + i) == 50 for i in range(4)), 30, "200 rows, none doubled")


def test_calls_bound_to_a_lost_instance_fail_unavailable_naming_it(world: World) -> None:
    def start_on_c() -> str | None:
        code, _, instance, replica = world.call("modal", "Start", pb.StartRequest())
        assert code == grpc.StatusCode.OK
        if replica != "c":
            world.call("modal", "Stop", pb.InstanceRef(instance_id=instance.instance_id))  # type: ignore[attr-defined]
            return None
        return instance.instance_id  # type: ignore[attr-defined, no-any-return]

    instance_id = wait_for(start_on_c, 60, "an instance on replica c")
    world.hosts["c"].kill()
    try:
        with pytest.raises(Unavailable, match=rf"replica c of modal, which holds {instance_id}"):
            world.call("modal", "Execute", pb.ExecuteRequest(instance_id=instance_id, code="1"))
    finally:
        world.hosts["c"].start_again()
    wait_for(lambda: _healthy(world, "modal") == {"b", "c"}, 60, "replica c back")


def _calls_only_reach(world: World, replica: str, verse: int) -> bool:
    outcome, calls = world.invoke("a", verse, {"instance_id": "", "calls": 12}, link="modal")
    assert outcome.ok, outcome.value
    return _replicas(calls) == {f"modal@{replica}"}


def test_a_hung_replica_stops_getting_calls(world: World) -> None:
    c = world.hosts["c"]
    c.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: _calls_only_reach(world, "b", 300), 60, "calls avoid the stopped replica c")
    finally:
        c.signal(signal.SIGCONT)
    wait_for(lambda: _healthy(world, "modal") == {"b", "c"}, 60, "replica c back after SIGCONT")
    wait_for(lambda: "modal@c" in _replicas(world.invoke("a", 301, {"instance_id": "", "calls": 12})[1]), 60,
             "calls reach c again")


def test_a_cut_link_stops_getting_calls(world: World) -> None:
    world.topology.cut("c")
    try:
        wait_for(lambda: _calls_only_reach(world, "b", 310), 60, "calls avoid the cut-off replica c")
    finally:
        world.topology.cut("c", up=True)
    wait_for(lambda: _healthy(world, "modal") == {"b", "c"}, 60, "replica c back after the link is up")


def _provider_daemon(cmdline: bytes, name: str = "") -> bool:
    """Whether a command line is a provider daemon's (``name``'s, when given): a host starts them as
    ``python -m worldrt.providers serve NAME``, a user as ``worldrt provider serve NAME``."""
    return any(f"{command}\0serve\0{name}".encode() in cmdline for command in ("worldrt.providers", "provider"))


def test_selection_falls_back_when_no_modal_replica_is_left(world: World) -> None:
    def select() -> dict[str, object]:
        events = list(world.hosts["a"].stub.RunVerse(host_pb.VerseRequest(kind="select", preset="inference"),
                                                     timeout=60))
        return json.loads(next(e.result_json for e in events if e.result_json))  # type: ignore[no-any-return]

    def executor() -> str:
        return next(c["provider"] for c in select()["roles"] if c["role"] == "executor")  # type: ignore[attr-defined, index]

    assert executor() == "modal"
    daemons = [pid for host in ("b", "c") for pid, line in cmdlines(processes_under(str(world.hosts[host].home))).items()
               if _provider_daemon(line, "modal")]
    assert len(daemons) == 2
    for pid in daemons:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: executor() == "morph", 30, "the executor role falls back to morph")
    finally:
        for pid in daemons:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # replaced as hung by its supervisor
    wait_for(lambda: executor() == "modal", 60, "modal replicas rejoin")


def test_a_host_killed_right_after_a_run_returned_loses_no_row(world: World) -> None:
    outcome, _ = world.invoke("a", 400, {"instance_id": "", "calls": 5}, link="modal")
    world.hosts["a"].kill()
    try:
        assert outcome.ok and outcome.provider_calls == 5
        wait_for(lambda: world.rows(400) == 5, 30, "the killed host's 5 rows in the registry")
    finally:
        world.hosts["a"].start_again()


def test_a_registry_killed_and_restarted_loses_and_doubles_nothing(world: World) -> None:
    registry = world.registry
    registry.signal(signal.SIGKILL)
    registry.proc.wait(30)
    outcome, _ = world.invoke("c", 401, {"instance_id": "", "calls": 7}, link="modal")
    assert outcome.ok
    registry.restart()
    registry.ready()
    wait_for(lambda: world.rows() == world.calls, 60, f"{world.calls} rows after the registry's restart")
    assert world.rows(401) == 7 and world.rows(400) == 5


def test_a_host_leaving_on_sigterm_finishes_its_calls_first(world: World) -> None:
    b = world.hosts["b"]
    started = threading.Event()
    answers: list[object] = []

    def on_event(data: bytes) -> None:
        if "started" in pb.ExecutionEvent.FromString(data).stdout:
            started.set()

    def stream() -> None:
        request = pb.ExecuteRequest(code="import time\nprint('started', flush=True)\ntime.sleep(2)\nprint('done')\n",
                                    language="python", timeout_ms=30_000)
        answers.append(world.lattice.run(world.caller.call(
            "modal", METHODS["ExecuteStream"], request.SerializeToString(), [], 60, bound=("b", "a stream"),
            on_event=on_event), 90))

    thread = threading.Thread(target=stream)
    thread.start()
    assert started.wait(60), "the stream never started on b"
    b.signal(signal.SIGTERM)
    thread.join(90)
    assert answers and answers[0].code == grpc.StatusCode.OK, answers  # type: ignore[attr-defined]
    assert b.proc.wait(60) == 0
    assert "b" not in {h["host_id"] for h in _status(world)["hosts"]}  # type: ignore[index]
    assert _healthy(world, "modal") == {"c"}
    b.start_again()
    wait_for(lambda: _healthy(world, "modal") == {"b", "c"}, 60, "b back")
