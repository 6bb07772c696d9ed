"""A tenant that speaks the daemon's protocol itself (issue 20's security review), against the real morph
daemon: code run by Execute is the agent's own interpreter, so it can write frames on the agent's channel
and replace the supervisor of its processes (``sys.modules["_procman"]``). Whatever it sends, another
tenant's calls are served while it does, its own calls end, and the daemon cuts it off where the
protocol is broken."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tests.support import module_daemon, wait_for
from tests.support.processes import alive, open_fds, open_pipes
from worldrt.providers.testing import ProviderDaemon, pids_of_uid
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons

# Run in tenant A: the next StartProcess forks this "supervisor", which answers the start and then floods
# exits of pids it never started, as fast as its channel takes them, for 30 s.
FORGED_SUPERVISOR = """
import os, sys, time, types, _wire
def serve(chan, key):
    try:
        chan.setblocking(True)
        _wire.send_hello(chan, {"hello": key})
        msg, fds, _ = _wire.recv(chan)
        for fd in fds:
            os.close(fd)
        _wire.send(chan, {"ok": True, "pid": 4242, "seq": msg["seq"]})
        flood = b"".join(_wire.encode({"ev": "exit", "pid": 100000 + i, "code": 0}) for i in range(8000))
        end = time.monotonic() + 30
        while time.monotonic() < end:
            chan.sendall(flood)
    finally:
        os._exit(0)
fake = types.ModuleType("_procman")
fake.serve = serve
sys.modules["_procman"] = fake
"""

# Run in tenant A by Execute: frames straight onto the agent's channel, for up to ``seconds``, until SIGINT.
CHANNEL_FLOOD = """
import signal, sys, time, _wire
agent = sys.modules["__main__"]
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
frames = _wire.encode({{"ev": "stdout", "d": {text!r}}}) * 8000
end = time.monotonic() + {seconds}
while not stop and time.monotonic() < end:
    agent.STATE.chan.sendall(frames)
"stopped" if stop else "ran out"
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "morph", pool_size="2")


@pytest.fixture()
def stub(daemon: ProviderDaemon) -> Any:
    return daemon.stub


@pytest.fixture()
def tenants(stub: Any) -> Iterator[tuple[str, str]]:
    ids = [stub.Start(pb.StartRequest()).instance_id for _ in range(2)]
    yield ids[0], ids[1]
    for iid in ids:
        try:
            stub.Stop(pb.InstanceRef(instance_id=iid), timeout=30)
        except grpc.RpcError:
            pass


def served_meanwhile(stub: Any, other: str, call: Callable[[], Any]) -> Any:
    """Run ``call`` (tenant A's); while it runs, tenant B's trivial Execute must keep being answered, each
    within 10 s (a daemon whose event loop is held by A answers none). What ``call`` returned or raised."""
    with ThreadPoolExecutor(1) as pool:
        running: Future[Any] = pool.submit(call)
        served = 0
        while not running.done() or served == 0:
            assert stub.Execute(pb.ExecuteRequest(instance_id=other, code="6*7"), timeout=10).value_json == "42"
            served += 1
        return running.exception() or running.result()


def test_a_forged_supervisor_flooding_exits_is_cut_off_and_others_are_served(
        stub: Any, tenants: tuple[str, str]) -> None:
    a, b = tenants
    stub.Execute(pb.ExecuteRequest(instance_id=a, code=FORGED_SUPERVISOR), timeout=30)
    got = served_meanwhile(stub, b, lambda: stub.StartProcess(
        pb.StartProcessRequest(instance_id=a, argv=["sleep", "600"]), timeout=30))
    # The start was answered before the flood: the record exists, ended with the supervisor that lied.
    assert isinstance(got, pb.ProcessInfo), got
    ended = wait_for(lambda: [p for p in stub.ListProcesses(pb.ListProcessesRequest(instance_id=a), timeout=10)
                              .processes if p.state != pb.PROCESS_RUNNING], 20, "the lying supervisor was not cut off")
    assert [(p.process_id, p.state) for p in ended] == [(got.process_id, pb.PROCESS_KILLED)]
    listed = ended
    assert "broke the protocol" in listed[0].reason and "did not start" in listed[0].reason
    # A's instance is fine, and gets a real supervisor at its next start.
    assert stub.Execute(pb.ExecuteRequest(instance_id=a, code="6*7"), timeout=30).value_json == "42"
    stub.Execute(pb.ExecuteRequest(instance_id=a, code="import sys; del sys.modules['_procman']"), timeout=30)
    real = stub.StartProcess(pb.StartProcessRequest(instance_id=a, argv=["true"]), timeout=30)
    ended = stub.WaitProcess(pb.WaitProcessRequest(instance_id=a, process_id=real.process_id, timeout_ms=10_000),
                             timeout=20)
    assert (ended.state, ended.exit_code) == (pb.PROCESS_EXITED, 0)


def test_empty_output_frames_are_a_protocol_error_not_a_stall(stub: Any, tenants: tuple[str, str]) -> None:
    a, b = tenants
    got = served_meanwhile(stub, b, lambda: stub.Execute(pb.ExecuteRequest(
        instance_id=a, code=CHANNEL_FLOOD.format(text="", seconds=20), timeout_ms=3000), timeout=15))
    assert isinstance(got, grpc.RpcError), got
    assert got.code() == grpc.StatusCode.ABORTED, got.details()
    assert "empty stdout frame" in (got.details() or "")


def test_a_run_flooding_small_frames_still_times_out_on_time(stub: Any, tenants: tuple[str, str]) -> None:
    """One character a frame, as fast as the channel takes them: the run's timeout fires (its SIGINT stops
    the flood) long before the 2 MiB a run may write (a daemon that never yields would read to that cap
    first, and stop the instance)."""
    a, b = tenants
    got = served_meanwhile(stub, b, lambda: stub.Execute(pb.ExecuteRequest(
        instance_id=a, code=CHANNEL_FLOOD.format(text="x", seconds=60), timeout_ms=1000), timeout=60))
    assert isinstance(got, pb.ExecutionResult), got
    assert got.value_json == '"stopped"'
    assert 0 < len(got.stdout) < 2 * 1024 * 1024


def _sleeper_and_parent(uid: int) -> tuple[int, int, str] | None:
    """(pid, parent pid, the parent's state letter) of the instance's ``sleep 600``, as the host sees them."""
    for pid in alive(pids_of_uid(uid)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() != b"sleep\x00600\x00":
                    continue
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{ppid}/stat") as f:
                return pid, ppid, f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, ValueError):
            continue
    return None


def stop_supervisor(stub: Any, iid: str) -> int:
    """Have the instance SIGSTOP the supervisor of its processes (the parent of a process it starts); the
    pid of that process (``sleep 600``) as the host sees it."""
    uid = int(stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import os; os.getuid()"), timeout=30).value_json)
    stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=["sh", "-c", "sleep 1; kill -STOP $PPID; "
                                                                                "exec sleep 600"]), timeout=30)

    def stopped() -> int | None:
        found = _sleeper_and_parent(uid)
        return found[0] if found is not None and found[2] == "T" else None

    pid: int = wait_for(stopped, 20, "the supervisor did not stop")
    return pid


def _code(future: Any) -> grpc.StatusCode | None:
    if not future.done():
        return None
    error = future.exception()
    return error.code() if error is not None else grpc.StatusCode.OK


def test_a_stopped_supervisor_holds_no_call_and_no_descriptor_and_is_killed(
        stub: Any, daemon: ProviderDaemon, tenants: tuple[str, str]) -> None:
    """The tenant SIGSTOPs its supervisor, then sends a start whose argv fills the channel and a crowd of
    starts behind it: past a bound they are refused at once, those waiting hold no descriptors, all end
    within the request timeout, the supervisor is killed with its processes, and B is served throughout."""
    a, b = tenants
    assert daemon.proc is not None
    sleeper = stop_supervisor(stub, a)
    before = open_fds(daemon.proc.pid)
    pipes = open_pipes(daemon.proc.pid)
    big = stub.StartProcess.future(pb.StartProcessRequest(instance_id=a, argv=["true", "x" * 900_000]), timeout=30)
    # The crowd goes out once the big start has its turn (its pipes are made): each start sent before it would
    # hold its own pipes while it waits for the answer, so the order the calls reach the daemon would decide
    # the count below.
    wait_for(lambda: open_pipes(daemon.proc.pid) > pipes, 20, "the big start never took its turn to send")
    crowd = [stub.StartProcess.future(pb.StartProcessRequest(instance_id=a, argv=["true"]), timeout=30)
             for _ in range(150)]
    wait_for(lambda: any(_code(f) == grpc.StatusCode.RESOURCE_EXHAUSTED for f in crowd), 20,
             "no start past the bound was refused")
    held = open_fds(daemon.proc.pid) - before
    assert held < 40, f"the waiting starts hold {held} descriptors of the daemon"
    assert stub.Execute(pb.ExecuteRequest(instance_id=b, code="6*7"), timeout=10).value_json == "42"
    codes = [_code(f) for f in wait_for(lambda: [f for f in [big, *crowd] if f.done()] == [big, *crowd] and
                                        [big, *crowd], 25, "the starts did not end")]
    assert set(codes) == {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes[0] == grpc.StatusCode.UNAVAILABLE
    # The first to wait too long (whichever reached the daemon first) says so; the rest, that it is gone.
    assert any("did not answer in time" in f.exception().details() for f in [big, *crowd])
    assert "at most 64" in next(f.exception().details() for f in crowd
                                if _code(f) == grpc.StatusCode.RESOURCE_EXHAUSTED)
    # The stopped supervisor was killed, and the process it started with it.
    wait_for(lambda: sleeper not in alive({sleeper}), 20, "the stopped supervisor's process outlived it")
    wait_for(lambda: open_fds(daemon.proc.pid) <= before + 4, 20, "the daemon did not release the descriptors")
    listed = stub.ListProcesses(pb.ListProcessesRequest(instance_id=a), timeout=10).processes
    assert [p.state for p in listed] == [pb.PROCESS_KILLED] and "was killed" in listed[0].reason
    real = stub.StartProcess(pb.StartProcessRequest(instance_id=a, argv=["true"]), timeout=30)
    ended = stub.WaitProcess(pb.WaitProcessRequest(instance_id=a, process_id=real.process_id, timeout_ms=10_000),
                             timeout=20)
    assert ended.state == pb.PROCESS_EXITED


def test_stopping_the_instance_ends_a_start_stuck_sending(stub: Any, tenants: tuple[str, str]) -> None:
    a, _ = tenants
    stop_supervisor(stub, a)
    big = stub.StartProcess.future(pb.StartProcessRequest(instance_id=a, argv=["true", "x" * 900_000]), timeout=30)
    with pytest.raises(grpc.RpcError):  # a start behind it waits its turn (not an answer yet: it times out here)
        stub.StartProcess(pb.StartProcessRequest(instance_id=a, argv=["true"]), timeout=0.5)
    stub.Stop(pb.InstanceRef(instance_id=a), timeout=10)
    wait_for(big.done, 5, "the start stuck sending outlived the instance's Stop")
    error = big.exception()
    assert error is not None and error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
    assert "ended while the request waited" in error.details()
