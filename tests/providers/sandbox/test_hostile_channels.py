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
from worldrt.providers.testing import ProviderDaemon
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
