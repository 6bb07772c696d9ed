"""The host service's side of process calls (issue 20): output streams and waits that follow a process are
admitted apart from other calls and bounded per instance, so however many readers follow an instance's
processes, an exec, a stdin write and a signal on that same instance are still served; and a reader that
goes away gives its place back at the process's next output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import HostProcess, wait_for
from worldrt.host import ServiceLimits
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons

SOURCE = "follows"
PER_INSTANCE = ServiceLimits(components=1).follows_per_instance


@pytest.fixture()
def host(tmp_path: Path) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path)
    running.stub.PutLink(pb.LinkConfig(source_component=SOURCE, interfaces=["generator"], target_provider="morph"))
    yield running
    running.stop()


def call(host: HostProcess, timeout_s: float = 60, **operation: Any) -> host_pb.ProviderCallReply:
    return host.stub.CallProvider(host_pb.ProviderCallRequest(source=SOURCE, **operation), timeout=timeout_s)


def follow(host: HostProcess, iid: str, pid: str) -> Any:
    return host.stub.CallProviderStream(host_pb.ProviderCallRequest(
        source=SOURCE, read_process_output=pb.ReadProcessOutputRequest(instance_id=iid, process_id=pid)), timeout=120)


def refused(stream: Any) -> str:
    """The refusal of a stream (its first event read), or "" when it was admitted and sent one."""
    try:
        next(stream)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        return exc.details() or ""
    return ""


def test_readers_and_waiters_of_an_instance_leave_its_other_calls_their_places(host: HostProcess) -> None:
    iid = call(host, start=pb.StartRequest()).instance.instance_id
    # The provider lets 8 streams follow one process (and 32 an instance): the host's followers of the
    # instance are spread over two processes, so its own limit is the one reached.
    cats = [call(host, start_process=pb.StartProcessRequest(instance_id=iid, argv=["sh", "-c", "echo up; cat"],
                                                            stdin=True)).process.process_id for _ in range(2)]
    cat = cats[0]
    readers = [follow(host, iid, cats[i % 2]) for i in range(PER_INSTANCE)]
    assert [refused(r) for r in readers] == [""] * PER_INSTANCE  # each admitted, "up" read
    # A blocking wait is one more follower of the instance: past its limit, refused in a sentence.
    with pytest.raises(grpc.RpcError) as caught:
        call(host, wait_process=pb.WaitProcessRequest(instance_id=iid, process_id=cat, timeout_ms=30_000))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"instance {iid} is busy: {PER_INSTANCE} calls follow its processes" in caught.value.details()
    # Every other call on the instance is served meanwhile: code, stdin, a wait of 0, a signal, a listing.
    assert call(host, execute=pb.ExecuteRequest(instance_id=iid, code="6 * 7")).execution.value_json == "42"
    assert call(host, write_process_stdin=pb.WriteProcessStdinRequest(
        instance_id=iid, process_id=cat, offset=0, data=b"more\n")).stdin.offset == 5
    assert call(host, wait_process=pb.WaitProcessRequest(instance_id=iid, process_id=cat)).process.state \
        == pb.PROCESS_RUNNING
    assert len(call(host, list_processes=pb.ListProcessesRequest(instance_id=iid)).processes.processes) == 2
    # Readers that go away give their places back at the next output.
    for reader in readers:
        reader.cancel()
    call(host, write_process_stdin=pb.WriteProcessStdinRequest(instance_id=iid, process_id=cat, offset=5,
                                                               data=b"again\n"))

    def nudge() -> None:
        for each in cats:
            at = call(host, write_process_stdin=pb.WriteProcessStdinRequest(instance_id=iid, process_id=each)
                      ).stdin.offset
            call(host, write_process_stdin=pb.WriteProcessStdinRequest(instance_id=iid, process_id=each, offset=at,
                                                                       data=b".\n"))

    def all_admitted() -> bool:
        streams = [follow(host, iid, cats[i % 2]) for i in range(PER_INSTANCE)]
        answers = [refused(s) for s in streams]
        for stream in streams:
            stream.cancel()
        nudge()  # the probes leave too
        return answers == [""] * PER_INSTANCE

    # Each probe's own streams hold places until the nudge reaches them: probes 50 ms apart on a loaded machine
    # can keep finding the last probe's places still taken, so they are 0.5 s apart.
    wait_for(all_admitted, 30, "the places of the readers that left were not given back", interval_s=0.5)
    # Ending the process ends every stream following it.
    ended = call(host, signal_process=pb.SignalProcessRequest(instance_id=iid, process_id=cat, signal=9)).process
    assert ended.process_id == cat
    stream = follow(host, iid, cat)
    events = list(stream)
    assert events[-1].HasField("process_end") and events[-1].process_end.ended
    assert b"".join(e.process_output.data for e in events if e.HasField("process_output")).startswith(
        b"up\nmore\nagain\n")
    call(host, stop=pb.InstanceRef(instance_id=iid))
    assert "Traceback" not in host.log()
