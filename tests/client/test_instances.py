"""worldrt.Client's instances, against a running `worldrt host serve` and against an embedded host: code runs
and keeps its state, output streams as it comes, files move, snapshots branch and merge, and every failure
is the worldrt.errors kind of its status."""

from __future__ import annotations

import time

import grpc
import pytest

from worldrt.client import Client, ExecResult, Limits, Oracle, Output
from worldrt.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unimplemented,
    WorldError,
)

pytestmark = pytest.mark.daemons


def test_an_instance_runs_code_keeps_its_state_and_reports_each_run(rt: Client) -> None:
    with rt.start("morph", metadata={"test": "state"}) as inst:
        first = inst.exec("import sys\nx = 20\nprint('out')\nprint('err', file=sys.stderr)\nx + 1")
        assert (first.stdout, first.stderr, first.exit_code, first.value, first.ok) == ("out\n", "err\n", 0, 21, True)
        assert first.duration_ms > 0 and first.instance_id == inst.id and first.value_json == "21"
        assert inst.exec("x").value == 20
        assert inst.exec("y = 1").value is None
        raised = inst.exec("1 / 0")
        assert not raised.ok and raised.exit_code == 1 and raised.error.startswith("ZeroDivisionError")
        assert "Traceback" in raised.stderr
        command = inst.exec(argv=["sh", "-c", "echo $GREETING; exit 3"], env={"GREETING": "hi"})
        assert (command.stdout, command.exit_code, command.ok) == ("hi\n", 3, False)
        assert inst.exec("echo shell", language="shell").stdout == "shell\n"
        listed = {i.id: i for i in rt.instances()}
        assert listed[inst.id].info.metadata == {"test": "state"} and listed[inst.id].image == inst.image
    assert inst.stopped and inst.id not in {i.id for i in rt.instances()}


def test_exec_stream_yields_output_as_it_comes_then_the_result(rt: Client) -> None:
    code = ("import sys, time\nprint('early', flush=True)\ntime.sleep(2)\n"
            "print(repr(time.time()), file=sys.stderr, flush=True)\n'done'")
    with rt.start() as inst:
        items: list[Output | ExecResult] = []
        arrived = 0.0
        for item in inst.exec_stream(code):
            items.append(item)
            if item == Output("stdout", "early\n"):
                arrived = time.time()
    *outputs, result = items
    assert isinstance(result, ExecResult) and result.value == "done" and result.ok
    assert outputs[0] == Output("stdout", "early\n")
    written_late = float("".join(o.text for o in outputs if isinstance(o, Output) and o.stream == "stderr"))
    # Causal, not timed: the first line reached us before the run wrote its last one (2 s later, in the sandbox).
    assert 0 < arrived < written_late


def test_files_go_in_and_out_of_the_workspace(rt: Client) -> None:
    with rt.start() as inst:
        assert inst.files.write_many({"data/a.txt": "alpha", "data/b.bin": bytes(range(256))}) == 5 + 256
        assert inst.files.write("c.txt", b"gamma", mode=0o600) == 5
        assert inst.files.read_text("data/a.txt") == "alpha"
        assert inst.files.read("data/b.bin", offset=250) == bytes(range(250, 256))
        assert inst.files.read("data/b.bin", offset=1, length=2) == b"\x01\x02"
        assert {(f.name, f.path, f.kind, f.size) for f in inst.files.list("data")} == {
            ("a.txt", "data/a.txt", "file", 5), ("b.bin", "data/b.bin", "file", 256)}
        top = {f.name: f for f in inst.files.list()}
        assert top["data"].kind == "dir" and top["c.txt"].mode & 0o777 == 0o600 and top["c.txt"].modified_at
        assert inst.exec("open('data/a.txt').read()").value == "alpha"
        with pytest.raises(InvalidArgument):
            inst.files.read("../../etc/passwd")
        with pytest.raises(NotFound):
            inst.files.read("nothing-here")


def test_a_snapshot_branches_into_instances_that_keep_its_state_and_merge_keeps_the_winner(rt: Client) -> None:
    with rt.start() as inst:
        inst.exec("state = ['root']")
        inst.files.write("note.txt", "from the root")
        snapshot = inst.snapshot()
        assert snapshot.info.kind == "memory_and_disk" and snapshot.info.instance_id == inst.id
        branches = snapshot.branch(3)
        assert len({inst.id, *(b.id for b in branches)}) == 4
        for i, branch in enumerate(branches):
            assert branch.exec(f"state.append({i}); state").value == ["root", i]
            assert branch.files.read_text("note.txt") == "from the root"
        assert inst.exec("state").value == ["root"]
        assert {inst.id, *(b.id for b in branches)} <= {i.id for i in rt.instances()}
        survivor = rt.merge(branches, {branches[0]: 1.0, branches[1]: 3.0, branches[2]: 2.0})
        assert survivor is branches[1] and not survivor.stopped and branches[0].stopped and branches[2].stopped
        assert survivor.exec("state").value == ["root", 1]
        with pytest.raises(FailedPrecondition, match="merged"):
            branches[0].exec("state")
        assert not {branches[0].id, branches[2].id} & {i.id for i in rt.instances()}
        pair = inst.branch(2)
        assert rt.merge([*pair], Oracle(scores={pair[0].id: 5.0, pair[1].id: 1.0}, rule="min")) is pair[1]
        assert rt.merge([pair[1], survivor], pair[1].id) is pair[1] and survivor.stopped
        with snapshot.start() as again:
            assert again.exec("state").value == ["root"]
        snapshot.delete()
        with pytest.raises(WorldError):
            snapshot.branch(1)
        pair[1].stop()


def test_failures_are_the_error_kinds_of_their_status(rt: Client) -> None:
    ghost = rt.instance("i-000000000000")
    with pytest.raises(NotFound) as info:
        ghost.exec("1")
    assert "i-000000000000" in info.value.message and info.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(NotFound):
        ghost.files.list()
    with pytest.raises(NotFound):
        ghost.stop()
    with pytest.raises(InvalidArgument, match="code"):
        ghost.exec()
    with pytest.raises(NotFound, match="no-such-image"):
        rt.start(image="no-such-image")
    with pytest.raises(InvalidArgument, match="memory_mb"):
        rt.start(limits=Limits(memory_mb=1))
    with pytest.raises(InvalidArgument, match="unknown provider"):
        rt.start("nobody")
    with pytest.raises(Unimplemented):
        rt.start("gensyn")
    with rt.start() as inst:
        with pytest.raises(DeadlineExceeded):
            inst.exec("import time; time.sleep(30)", timeout_s=1)
        inst.stop()
        inst.stop()  # a second stop does nothing
        with pytest.raises(FailedPrecondition):
            rt.instance(inst.id).exec("1")


def test_the_clients_calls_travel_a_link_of_its_own_and_are_recorded(rt: Client) -> None:
    with rt.start() as inst:
        inst.exec("1 + 1")
    assert {"images", "links", "components", "verse", "providers", "start", "merge"} <= set(dir(rt))
    assert {"files", "exec", "exec_stream", "snapshot", "branch", "stop"} <= set(dir(inst))
    links = {link.link_id: link for link in rt.links.list()}
    own = links["client-morph/generator/default"]
    assert (own.source, own.interfaces, own.provider) == ("client-morph", ("generator",), "morph")
    operations = {(c.provider, c.operation) for c in rt.invocations(limit=200)}
    assert {("morph", "start"), ("morph", "execute"), ("morph", "stop")} <= operations


def test_instances_are_listed_per_provider_and_modal_s_files_go_through_it(rt: Client) -> None:
    with rt.start("modal", ttl_s=120) as sandbox, rt.start("morph") as inst:
        assert sandbox.provider == "modal" and sandbox.exec("21 * 2").value == 42
        assert sandbox.files.write("m.txt", "modal") == 5 and sandbox.files.read_text("m.txt") == "modal"
        modal_ids = {i.id for i in rt.instances("modal")}
        assert sandbox.id in modal_ids and inst.id not in modal_ids
        assert all(i.provider == "modal" for i in rt.instances("modal"))
        assert sandbox.snapshot().info.kind == "disk_only"
        with pytest.raises(NotFound):
            rt.instance(sandbox.id).exec("1")  # a modal id asked of morph
    assert sandbox.id not in {i.id for i in rt.instances("modal")}
