"""Long-lived processes in an instance (issue 20), on the real morph and modal daemons: start, output by
offset, stdin by offset, wait, signal, list; they share the instance's files and uid, outlive the call
that started them, end with it, and are named (not carried) by snapshots and branches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.support import module_daemon, wait_for
from tests.support.processes import alive
from worldrt.providers.testing import ProviderDaemon, pids_of_uid
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module", params=["morph", "modal"])
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, request.param, pool_size="1")


@pytest.fixture()
def stub(daemon: ProviderDaemon) -> Any:
    return daemon.stub


@pytest.fixture()
def iid(stub: Any) -> Iterator[str]:
    inst = stub.Start(pb.StartRequest())
    yield inst.instance_id
    try:
        stub.Stop(pb.InstanceRef(instance_id=inst.instance_id))
    except grpc.RpcError:
        pass


def start(stub: Any, iid: str, *argv: str, **kw: Any) -> pb.ProcessInfo:
    return stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=list(argv), **kw), timeout=30)


def read_all(stub: Any, iid: str, pid: str, **kw: Any) -> dict[str, bytes]:
    """Both streams (or the one asked) to their end, checking each chunk's offset follows the last."""
    out = {pb.PROCESS_STDOUT: b"", pb.PROCESS_STDERR: b""}
    starts = {pb.PROCESS_STDOUT: kw.get("stdout_offset", 0), pb.PROCESS_STDERR: kw.get("stderr_offset", 0)}
    for chunk in stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=pid, **kw),
                                        timeout=30):
        assert chunk.offset == starts[chunk.stream] + len(out[chunk.stream])
        out[chunk.stream] += chunk.data
    return {"stdout": out[pb.PROCESS_STDOUT], "stderr": out[pb.PROCESS_STDERR]}


def wait(stub: Any, iid: str, pid: str, timeout_ms: int = 20_000) -> pb.ProcessInfo:
    return stub.WaitProcess(pb.WaitProcessRequest(instance_id=iid, process_id=pid, timeout_ms=timeout_ms),
                            timeout=timeout_ms / 1000 + 10)


def write(stub: Any, iid: str, pid: str, offset: int, data: bytes, eof: bool = False) -> pb.WriteProcessStdinReply:
    return stub.WriteProcessStdin(pb.WriteProcessStdinRequest(instance_id=iid, process_id=pid, offset=offset,
                                                              data=data, eof=eof), timeout=10)


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def test_a_process_reads_stdin_by_offset_writes_both_streams_and_exits_with_its_code(stub: Any, iid: str) -> None:
    proc = start(stub, iid, "sh", "-c", "echo out; echo err >&2; cat; exit 3", stdin=True, tag="t1")
    assert proc.state == pb.PROCESS_RUNNING and proc.pid > 0 and proc.tag == "t1" and proc.stdin_open
    assert write(stub, iid, proc.process_id, 0, b"ab").offset == 2
    assert write(stub, iid, proc.process_id, 0, b"ab").offset == 2  # a retry is not applied twice
    assert write(stub, iid, proc.process_id, 1, b"bcd\n").offset == 5  # only the new tail is
    gap = code_of(lambda: write(stub, iid, proc.process_id, 9, b"x"))
    assert gap == grpc.StatusCode.OUT_OF_RANGE
    closed = write(stub, iid, proc.process_id, 5, b"", eof=True)
    assert closed.offset == 5
    out = read_all(stub, iid, proc.process_id)
    assert out == {"stdout": b"out\nabcd\n", "stderr": b"err\n"}
    done = wait(stub, iid, proc.process_id)
    assert (done.state, done.exit_code, done.signal) == (pb.PROCESS_EXITED, 3, 0)
    assert done.stdout_size == 9 and done.stderr_size == 4 and done.output_ended and not done.stdin_open
    # Output stays readable after the end, from any offset, one stream at a time.
    again = read_all(stub, iid, proc.process_id, stream=pb.PROCESS_STDOUT, stdout_offset=4)
    assert again == {"stdout": b"abcd\n", "stderr": b""}
    assert code_of(lambda: write(stub, iid, proc.process_id, 5, b"more")) == grpc.StatusCode.FAILED_PRECONDITION


def test_output_is_bytes_and_a_no_wait_read_returns_what_is_kept_now(stub: Any, iid: str) -> None:
    proc = start(stub, iid, "python3", "-c",
                 "import sys,time; sys.stdout.buffer.write(bytes(range(256))); sys.stdout.flush(); time.sleep(60)")
    wait_for(lambda: wait(stub, iid, proc.process_id, 0).stdout_size == 256, 20, "the bytes did not arrive")
    now = read_all(stub, iid, proc.process_id, no_wait=True)
    assert now["stdout"] == bytes(range(256))
    assert wait(stub, iid, proc.process_id, 0).state == pb.PROCESS_RUNNING


def test_an_offset_not_written_yet_is_waited_for_and_one_past_ended_output_is_out_of_range(
        stub: Any, iid: str) -> None:
    # The process writes only after its stdin closes: the read from offset 3 is asked before any output.
    proc = start(stub, iid, "sh", "-c", "read _; echo abcdef", stdin=True)
    reply = stub.ReadProcessOutput(pb.ReadProcessOutputRequest(
        instance_id=iid, process_id=proc.process_id, stream=pb.PROCESS_STDOUT, stdout_offset=3), timeout=30)
    assert wait(stub, iid, proc.process_id, 0).stdout_size == 0
    write(stub, iid, proc.process_id, 0, b"go\n", eof=True)
    chunks = list(reply)
    assert b"".join(c.data for c in chunks) == b"def\n" and chunks[0].offset == 3 and chunks[-1].eof
    assert wait(stub, iid, proc.process_id).state == pb.PROCESS_EXITED
    past = lambda: list(stub.ReadProcessOutput(pb.ReadProcessOutputRequest(  # noqa: E731
        instance_id=iid, process_id=proc.process_id, stream=pb.PROCESS_STDOUT, stdout_offset=100), timeout=30))
    assert code_of(past) == grpc.StatusCode.OUT_OF_RANGE


def test_a_reader_that_leaves_while_others_wait_does_not_end_their_wait(stub: Any, iid: str) -> None:
    # The readers of a process wait on one shared wake-up: one that goes away must not cancel it for the rest.
    proc = start(stub, iid, "sh", "-c", "echo up; cat", stdin=True)
    readers = [stub.ReadProcessOutput(pb.ReadProcessOutputRequest(
        instance_id=iid, process_id=proc.process_id, stream=pb.PROCESS_STDOUT), timeout=20) for _ in range(3)]
    assert [next(r).data for r in readers] == [b"up\n"] * 3
    stub.ListProcesses(pb.ListProcessesRequest(instance_id=iid), timeout=10)  # the readers wait by now
    readers[0].cancel()
    stub.ListProcesses(pb.ListProcessesRequest(instance_id=iid), timeout=10)  # and the first one has left
    write(stub, iid, proc.process_id, 0, b"next\n")
    assert [next(r).data for r in readers[1:]] == [b"next\n"] * 2
    for reader in readers[1:]:
        reader.cancel()


def test_a_process_shares_the_instances_files_and_uid_and_runs_while_it_executes_code(stub: Any, iid: str) -> None:
    stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import os; os.makedirs('sub', exist_ok=True)"))
    proc = start(stub, iid, "sh", "-c", "pwd; echo $GREETING; id -u; echo made > made.txt; sleep 60",
                 cwd="sub", env={"GREETING": "hello"})
    assert proc.cwd == "/workspace/sub"
    wait_for(lambda: wait(stub, iid, proc.process_id, 0).stdout_size >= 4, 20, "the process did not write")
    # Code runs in the instance while the process lives on (it outlived the call that started it).
    uid = stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import os; os.getuid()")).value_json
    seen = wait_for(lambda: stub.Execute(pb.ExecuteRequest(
        instance_id=iid, code="import os; os.path.exists('sub/made.txt')")).value_json == "true", 20,
        "the instance did not see the process's file")
    assert seen
    lines = read_all(stub, iid, proc.process_id, no_wait=True)["stdout"].decode().split()
    assert lines[:3] == ["/workspace/sub", "hello", uid]
    assert wait(stub, iid, proc.process_id, 0).state == pb.PROCESS_RUNNING


def test_wait_signal_and_timeout_are_distinct_states(stub: Any, iid: str) -> None:
    sleeper = start(stub, iid, "sleep", "600")
    assert wait(stub, iid, sleeper.process_id, 200).state == pb.PROCESS_RUNNING
    stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id=sleeper.process_id, signal=15))
    ended = wait(stub, iid, sleeper.process_id)
    assert (ended.state, ended.signal) == (pb.PROCESS_KILLED, 15)
    timed = start(stub, iid, "sleep", "600", timeout_ms=300)
    ended = wait(stub, iid, timed.process_id)
    assert (ended.state, ended.signal) == (pb.PROCESS_TIMED_OUT, 9)
    # Signalling an ended process changes nothing and says how it ended.
    again = stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id=timed.process_id))
    assert again.state == pb.PROCESS_TIMED_OUT
    listed = stub.ListProcesses(pb.ListProcessesRequest(instance_id=iid)).processes
    assert [(p.process_id, p.state) for p in listed] == [(sleeper.process_id, pb.PROCESS_KILLED),
                                                          (timed.process_id, pb.PROCESS_TIMED_OUT)]


def test_bad_requests_get_clear_statuses(stub: Any, iid: str) -> None:
    missing = code_of(lambda: start(stub, iid, "no-such-program-here"))
    assert missing == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: start(stub, iid)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: start(stub, iid, "true", cwd="no/such/dir")) == grpc.StatusCode.INVALID_ARGUMENT
    first = start(stub, iid, "sleep", "60", process_id="web-1")
    assert first.process_id == "web-1"
    assert code_of(lambda: start(stub, iid, "true", process_id="web-1")) == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(lambda: write(stub, iid, "web-1", 0, b"x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: wait(stub, iid, "nope", 0)) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: wait(stub, "i-000000000000", "web-1", 0)) == grpc.StatusCode.NOT_FOUND
    bad_signal = code_of(lambda: stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id="web-1",
                                                                            signal=99)))
    assert bad_signal == grpc.StatusCode.INVALID_ARGUMENT
    # The instance still serves after all of that.
    assert stub.Execute(pb.ExecuteRequest(instance_id=iid, code="2*3")).value_json == "6"


def test_processes_end_with_their_instance(stub: Any) -> None:
    iid = stub.Start(pb.StartRequest()).instance_id
    uid = int(stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import os; os.getuid()")).value_json)
    proc = start(stub, iid, "sh", "-c", "echo up; sleep 600 & sleep 601", stdin=True)
    wait_for(lambda: len(alive(pids_of_uid(uid))) >= 4, 20, "the processes did not start")
    reader = stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=proc.process_id),
                                    timeout=30)
    assert next(reader).data == b"up\n"  # the stream is being served (not still on its way) when Stop comes
    stub.Stop(pb.InstanceRef(instance_id=iid))
    assert [c.eof for c in reader if c.eof] == [True, True]  # a follower ends with the instance
    wait_for(lambda: not alive(pids_of_uid(uid)), 20, "the instance's processes did not end with it")
    stopped = code_of(lambda: wait(stub, iid, proc.process_id, 0))
    assert stopped == grpc.StatusCode.FAILED_PRECONDITION


def test_capabilities_say_what_snapshots_carry(stub: Any, daemon: ProviderDaemon) -> None:
    caps = {c.name: json.loads(c.value_json) for c in stub.Capabilities(pb.CapabilitiesRequest()).capabilities}
    said = caps["processes"]["snapshots"]
    assert "not the processes" in said
    assert ("memory" in said) == (daemon.name == "morph")
    assert "start_process" in stub.Capabilities(pb.CapabilitiesRequest()).operations


def test_a_snapshot_names_the_processes_it_does_not_carry(stub: Any, iid: str, daemon: ProviderDaemon) -> None:
    stub.Execute(pb.ExecuteRequest(instance_id=iid, code="x = 41"))
    running = start(stub, iid, "sleep", "600")
    ended = start(stub, iid, "true")
    assert wait(stub, iid, ended.process_id).state == pb.PROCESS_EXITED
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=iid))
    assert list(snap.processes_not_carried) == [running.process_id]
    if daemon.name != "morph":
        return
    branched = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=1))
    assert list(branched.processes_not_carried) == [running.process_id]
    child = branched.instances[0].instance_id
    try:
        assert stub.Execute(pb.ExecuteRequest(instance_id=child, code="x + 1")).value_json == "42"
        assert not stub.ListProcesses(pb.ListProcessesRequest(instance_id=child)).processes
        own = start(stub, child, "sh", "-c", "echo branch")
        assert read_all(stub, child, own.process_id)["stdout"] == b"branch\n"
        assert wait(stub, iid, running.process_id, 0).state == pb.PROCESS_RUNNING  # the parent's runs on
    finally:
        stub.Stop(pb.InstanceRef(instance_id=child))
        stub.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))


def test_a_relative_working_directory_is_walked_in_the_workspace_an_absolute_one_is_the_instances(
        stub: Any, iid: str) -> None:
    stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import os\nos.makedirs('in/side')\nos.symlink('/etc', 'out')\n"
                                                        "os.symlink('in/side', 'near')"))
    for cwd in ("..", "../etc", "out", "in/../../etc", "/no/such/folder"):
        with pytest.raises(grpc.RpcError) as caught:
            start(stub, iid, "pwd", cwd=cwd)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (cwd, caught.value.details())
        assert "working directory" in (caught.value.details() or ""), caught.value.details()
    # An absolute folder is the instance's own view (its /tmp, its /etc), as the process could cd there itself.
    for cwd, where in (("near", "/workspace/in/side"), ("/workspace/in", "/workspace/in"), ("", "/workspace"),
                       ("/tmp", "/tmp"), ("/etc", "/etc")):
        proc = start(stub, iid, "pwd", cwd=cwd)
        assert wait(stub, iid, proc.process_id).exit_code == 0
        assert read_all(stub, iid, proc.process_id)["stdout"] == where.encode() + b"\n", cwd
