"""What the daemon keeps for processes stays bounded however a tenant uses them (issue 20's security
review), against the real morph daemon: output kept by an instance's processes together and by the whole
daemon (past the per-process cap), output streams open at once, and forgotten process ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.support import module_daemon, wait_for
from tests.support.processes import rss_mib
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons
MIB = 1024 * 1024
PROCESS_MIB, INSTANCE_MIB, TOTAL_MIB = 4, 8, 12
CHUNK = 256 * 1024  # what one read of a pipe may add past a bound before the oldest is dropped
KEPT = 4


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "morph", pool_size="3", process_output_mb=str(PROCESS_MIB),
                             process_output_instance_mb=str(INSTANCE_MIB), process_output_total_mb=str(TOTAL_MIB),
                             processes_kept=str(KEPT))


@pytest.fixture()
def stub(daemon: ProviderDaemon) -> Any:
    return daemon.stub


@pytest.fixture()
def instances(stub: Any) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for iid in ids:
        try:
            stub.Stop(pb.InstanceRef(instance_id=iid), timeout=30)
        except grpc.RpcError:
            pass


def start(stub: Any, iid: str, *argv: str, **kw: Any) -> pb.ProcessInfo:
    return stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=list(argv), **kw), timeout=30)


def finished(stub: Any, iid: str, pid: str) -> pb.ProcessInfo:
    """The process once it exited and its output ended."""
    def done() -> pb.ProcessInfo | None:
        info = stub.WaitProcess(pb.WaitProcessRequest(instance_id=iid, process_id=pid, timeout_ms=5000), timeout=15)
        return info if info.state != pb.PROCESS_RUNNING and info.output_ended else None
    got: pb.ProcessInfo = wait_for(done, 30, f"process {pid} did not end")
    return got


def kept(info: pb.ProcessInfo) -> int:
    return info.stdout_size - info.stdout_first_offset + info.stderr_size - info.stderr_first_offset


def listed(stub: Any, iid: str) -> list[pb.ProcessInfo]:
    return list(stub.ListProcesses(pb.ListProcessesRequest(instance_id=iid), timeout=10).processes)


def test_output_is_bounded_per_instance_and_for_the_daemon_ended_output_going_first(
        stub: Any, daemon: ProviderDaemon, instances: list[str]) -> None:
    assert daemon.proc is not None
    before = rss_mib(daemon.proc.pid)
    wrote = 0
    for _ in range(3):
        iid = stub.Start(pb.StartRequest()).instance_id
        instances.append(iid)
        for _ in range(12):  # 48 MiB an instance: twelve processes at the per-process cap
            proc = start(stub, iid, "head", "-c", str(PROCESS_MIB * MIB), "/dev/zero", process_id=f"p{wrote}")
            assert finished(stub, iid, proc.process_id).stdout_size == PROCESS_MIB * MIB
            wrote += PROCESS_MIB * MIB
            everyone = [p for i in instances for p in listed(stub, i)]
            assert sum(kept(p) for p in listed(stub, iid)) <= INSTANCE_MIB * MIB + CHUNK
            assert sum(kept(p) for p in everyone) <= TOTAL_MIB * MIB + CHUNK
    grew = rss_mib(daemon.proc.pid) - before
    assert grew < (wrote // MIB) / 2, f"the daemon grew {grew:.0f} MiB while its processes wrote {wrote // MIB} MiB"
    # The newest output is what is kept: the last process's whole, the first instance's no longer.
    last = listed(stub, instances[-1])[-1]
    assert (last.stdout_first_offset, last.stdout_size) == (0, PROCESS_MIB * MIB)
    got = b"".join(c.data for c in stub.ReadProcessOutput(pb.ReadProcessOutputRequest(
        instance_id=instances[-1], process_id=last.process_id, stream=pb.PROCESS_STDOUT), timeout=30))
    assert got == bytes(PROCESS_MIB * MIB)
    first = listed(stub, instances[0])[-1]
    assert kept(first) == 0 and first.stdout_first_offset == PROCESS_MIB * MIB
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=instances[0],
                                                                process_id=first.process_id), timeout=10))
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert f"the first kept offset is {PROCESS_MIB * MIB}" in (caught.value.details() or "")
    caps = {c.name: c.value_json for c in stub.Capabilities(pb.CapabilitiesRequest(), timeout=10).capabilities}
    processes = json.loads(caps["processes"])
    assert (processes["output_instance_bytes"], processes["output_total_bytes"]) == (INSTANCE_MIB * MIB,
                                                                                      TOTAL_MIB * MIB)


def test_output_streams_open_at_once_are_bounded_and_a_closed_one_frees_its_place(
        stub: Any, daemon: ProviderDaemon, instances: list[str]) -> None:
    assert daemon.proc is not None
    iid = stub.Start(pb.StartRequest()).instance_id
    instances.append(iid)
    procs = [start(stub, iid, "sh", "-c", f"head -c {MIB} /dev/zero; exec sleep 600") for _ in range(5)]
    for proc in procs:
        wait_for(lambda p=proc: listed_one(stub, iid, p.process_id).stdout_size == MIB, 20, "no output")
    before = rss_mib(daemon.proc.pid)

    def opened(pid: str) -> Any:
        """A stream that has sent its first message and is then left unread."""
        stream = stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=pid), timeout=60)
        next(stream)
        return stream

    streams = [opened(procs[0].process_id) for _ in range(8)]
    with pytest.raises(grpc.RpcError) as caught:
        opened(procs[0].process_id)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "8 a process" in (caught.value.details() or "")
    streams += [opened(p.process_id) for p in procs[1:4] for _ in range(8)]
    refused = 0
    for _ in range(200):  # the whole instance is at its bound: each is refused, holding nothing
        with pytest.raises(grpc.RpcError) as caught:
            opened(procs[4].process_id)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
        refused += 1
    assert "32 an instance" in (caught.value.details() or "")
    grew = rss_mib(daemon.proc.pid) - before
    assert grew < 64, f"{len(streams)} stalled streams and {refused} refused ones took {grew:.0f} MiB of the daemon"
    for stream in streams[:8]:
        stream.cancel()
    # A cancelled stream gives its place back.
    wait_for(lambda: _opens(stub, iid, procs[0].process_id), 20, "a cancelled stream kept its place")
    for stream in streams[8:]:
        stream.cancel()


def listed_one(stub: Any, iid: str, pid: str) -> pb.ProcessInfo:
    return stub.WaitProcess(pb.WaitProcessRequest(instance_id=iid, process_id=pid), timeout=10)


def _opens(stub: Any, iid: str, pid: str) -> bool:
    stream = stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=pid), timeout=10)
    try:
        next(stream)
        return True
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return False
    finally:
        stream.cancel()


def test_forgotten_process_ids_are_remembered_within_a_bound(stub: Any, instances: list[str]) -> None:
    iid = stub.Start(pb.StartRequest()).instance_id
    instances.append(iid)
    remembered = 64 * KEPT
    count = remembered + KEPT + 3  # so the first two forgotten are no longer remembered
    for n in range(count):
        finished(stub, iid, start(stub, iid, "true", process_id=f"q{n}").process_id)
    # KEPT ended processes kept, and the last (ended since its start, when the older ones were forgotten).
    assert [p.process_id for p in listed(stub, iid)] == [f"q{n}" for n in range(count - KEPT - 1, count)]
    with pytest.raises(grpc.RpcError) as recent:
        listed_one(stub, iid, f"q{count - KEPT - 2}")
    assert recent.value.code() == grpc.StatusCode.NOT_FOUND and "was forgotten" in (recent.value.details() or "")
    with pytest.raises(grpc.RpcError) as old:
        listed_one(stub, iid, "q1")
    assert old.value.code() == grpc.StatusCode.NOT_FOUND and "was forgotten" not in (old.value.details() or "")
    assert start(stub, iid, "true", process_id="q0").process_id == "q0"  # an id long forgotten may be used again
