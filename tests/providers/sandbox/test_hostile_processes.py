"""Hostile processes (issue 20, deliverable 5), each against the real morph daemon: a flood of output, a
process that never reads its stdin, one that ignores SIGTERM, one that detaches (setsid, double fork),
a fork past the pids limit, and one whose children keep its stdout open after it exits. The daemon's
memory stays bounded, no call waits on a sandbox, the instance keeps working, nothing outlives it.
(A second tenant's latency during a flood is measured in bench/processes.py, not asserted here.)"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.support import module_daemon, wait_for
from tests.support.processes import alive, rss_mib
from worldrt.providers.testing import ProviderDaemon, pids_of_uid
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons
CAP_MIB = 1
STDIN_KIB = 64
FLOOD = "import os\nb = b'x' * 65536\nwhile True:\n    os.write(1, b)\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "morph", pool_size="1", process_output_mb=str(CAP_MIB),
                             process_stdin_kb=str(STDIN_KIB), process_drain_s="1")


@pytest.fixture()
def stub(daemon: ProviderDaemon) -> Any:
    return daemon.stub


def new_instance(stub: Any, **limits: int) -> tuple[str, int]:
    iid = stub.Start(pb.StartRequest(limits=pb.Limits(**limits) if limits else None)).instance_id
    uid = int(stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import os; os.getuid()")).value_json)
    return iid, uid


@pytest.fixture()
def inst(stub: Any) -> Iterator[tuple[str, int]]:
    iid, uid = new_instance(stub)
    yield iid, uid
    try:
        stub.Stop(pb.InstanceRef(instance_id=iid))
    except grpc.RpcError:
        pass
    wait_for(lambda: not alive(pids_of_uid(uid)), 20, "the instance's processes did not end with it")


def start(stub: Any, iid: str, *argv: str, **kw: Any) -> pb.ProcessInfo:
    return stub.StartProcess(pb.StartProcessRequest(instance_id=iid, argv=list(argv), **kw), timeout=30)


def info(stub: Any, iid: str, pid: str, timeout_ms: int = 0) -> pb.ProcessInfo:
    return stub.WaitProcess(pb.WaitProcessRequest(instance_id=iid, process_id=pid, timeout_ms=timeout_ms),
                            timeout=timeout_ms / 1000 + 10)


def works(stub: Any, iid: str) -> bool:
    return stub.Execute(pb.ExecuteRequest(instance_id=iid, code="6*7"), timeout=30).value_json == "42"


def test_a_flood_keeps_the_daemon_bounded_and_dropped_offsets_answer_out_of_range(
        stub: Any, daemon: ProviderDaemon, inst: tuple[str, int]) -> None:
    iid, _ = inst
    assert daemon.proc is not None
    before = rss_mib(daemon.proc.pid)
    flood = start(stub, iid, "python3", "-c", FLOOD)
    wait_for(lambda: info(stub, iid, flood.process_id).stdout_size > 200 * CAP_MIB * 1024 * 1024, 60,
             f"the flood did not write {200 * CAP_MIB} MiB")
    peak = rss_mib(daemon.proc.pid)
    now = info(stub, iid, flood.process_id)
    assert now.stdout_size - now.stdout_first_offset <= CAP_MIB * 1024 * 1024
    assert peak - before < 64, f"the daemon grew {peak - before:.0f} MiB while the flood wrote {now.stdout_size} bytes"
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=flood.process_id,
                                                                stream=pb.PROCESS_STDOUT), timeout=10))
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    first = int(re.search(r"first kept offset is (\d+)", caught.value.details()).group(1))  # type: ignore[union-attr]
    assert first > 0
    trailers = dict(caught.value.trailing_metadata() or ())
    assert trailers["x-worldrt-first-offset"].startswith("stdout=")
    assert works(stub, iid)  # the instance keeps working while it floods
    # Paused (SIGSTOP), the flood's kept output holds still: a read from its first kept offset gets exactly
    # the cap's worth, to the end of what it wrote.
    stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id=flood.process_id, signal=19))
    still = wait_for(lambda: _still(stub, iid, flood.process_id), 20, "the paused flood's output did not settle")
    got = b"".join(c.data for c in stub.ReadProcessOutput(pb.ReadProcessOutputRequest(
        instance_id=iid, process_id=flood.process_id, stream=pb.PROCESS_STDOUT, no_wait=True,
        stdout_offset=still.stdout_first_offset), timeout=10))
    assert len(got) == still.stdout_size - still.stdout_first_offset > CAP_MIB * 1024 * 1024 // 2
    assert set(got) == {ord("x")}
    stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id=flood.process_id, signal=18))
    assert works(stub, iid)  # the instance keeps working while it floods
    stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id=flood.process_id))
    assert info(stub, iid, flood.process_id, 10_000).state == pb.PROCESS_KILLED


def _still(stub: Any, iid: str, pid: str) -> pb.ProcessInfo | None:
    first = info(stub, iid, pid)
    time.sleep(0.2)
    second = info(stub, iid, pid)
    return second if second.stdout_size == first.stdout_size else None


def test_a_process_that_never_reads_stdin_gets_resource_exhausted_not_a_stall(
        stub: Any, inst: tuple[str, int]) -> None:
    iid, _ = inst
    deaf = start(stub, iid, "sleep", "600", stdin=True)
    offset, refused = 0, None
    chunk = b"y" * 16384
    for _ in range(64):
        t0 = time.monotonic()
        try:
            offset = stub.WriteProcessStdin(pb.WriteProcessStdinRequest(
                instance_id=iid, process_id=deaf.process_id, offset=offset, data=chunk), timeout=5).offset
        except grpc.RpcError as exc:
            refused = exc
            break
        assert time.monotonic() - t0 < 5
    assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "stdin took everything"
    assert "Nothing was applied" in (refused.details() or "")
    # What was accepted is the pipe's buffer and the daemon's bound, no more.
    assert offset <= 1024 * 1024 + STDIN_KIB * 1024
    again = stub.WriteProcessStdin(pb.WriteProcessStdinRequest(instance_id=iid, process_id=deaf.process_id,
                                                               offset=offset, data=b""), timeout=5)
    assert again.offset == offset and again.pending > 0
    assert works(stub, iid)


def test_a_process_that_ignores_sigterm_is_killed_by_sigkill(stub: Any, inst: tuple[str, int]) -> None:
    iid, _ = inst
    stubborn = start(stub, iid, "python3", "-c", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                                  "print('ready', flush=True)\ntime.sleep(600)")
    wait_for(lambda: info(stub, iid, stubborn.process_id).stdout_size > 0, 20, "it did not start")
    stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id=stubborn.process_id, signal=15))
    assert info(stub, iid, stubborn.process_id, 500).state == pb.PROCESS_RUNNING
    stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id=stubborn.process_id))  # 0: SIGKILL
    ended = info(stub, iid, stubborn.process_id, 10_000)
    assert (ended.state, ended.signal) == (pb.PROCESS_KILLED, 9)


def test_detached_and_double_forked_children_end_with_the_instance(stub: Any, inst: tuple[str, int]) -> None:
    iid, uid = inst
    escape = ("import os, time\n"
              "if os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '1001'])\n"
              "if os.fork() == 0:\n    if os.fork() == 0:\n        os.execvp('sleep', ['sleep', '1002'])\n    os._exit(0)\n"
              "print('left', flush=True)\n")
    proc = start(stub, iid, "python3", "-c", escape)
    assert info(stub, iid, proc.process_id, 20_000).state == pb.PROCESS_EXITED

    def sleepers() -> set[bytes]:
        found = set()
        for pid in alive(pids_of_uid(uid)):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    found.add(f.read())
            except OSError:
                pass
        return {c for c in found if c.startswith(b"sleep\x00100")}

    wait_for(lambda: len(sleepers()) == 2, 20, "the detached children did not run")
    stub.Stop(pb.InstanceRef(instance_id=iid))
    wait_for(lambda: not alive(pids_of_uid(uid)), 20, "a detached child outlived its instance")


def test_a_fork_past_the_pids_limit_leaves_the_daemon_and_the_instance_working(stub: Any) -> None:
    iid, uid = new_instance(stub, processes=24)
    try:
        bomb = start(stub, iid, "python3", "-c",
                     "import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
                     "        print('forks', n, flush=True)\n        time.sleep(600)\n    if pid == 0:\n"
                     "        time.sleep(600)\n        os._exit(0)\n    n += 1\n")
        wait_for(lambda: info(stub, iid, bomb.process_id).stdout_size > 0, 30, "the fork bomb did not hit the limit")
        with pytest.raises(grpc.RpcError) as caught:
            start(stub, iid, "true")
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
        stub.SignalProcess(pb.SignalProcessRequest(instance_id=iid, process_id=bomb.process_id))  # its whole group
        assert info(stub, iid, bomb.process_id, 10_000).state == pb.PROCESS_KILLED
        after = wait_for(lambda: _started(stub, iid), 20, "no process could start after the bomb was killed")
        assert info(stub, iid, after.process_id, 10_000).state == pb.PROCESS_EXITED
        assert works(stub, iid)
    finally:
        stub.Stop(pb.InstanceRef(instance_id=iid))
    wait_for(lambda: not alive(pids_of_uid(uid)), 20, "the bomb's children outlived the instance")


def _started(stub: Any, iid: str) -> pb.ProcessInfo | None:
    try:
        return start(stub, iid, "true")
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return None


def test_children_holding_stdout_after_the_parent_exits_do_not_hold_its_output_open(
        stub: Any, inst: tuple[str, int]) -> None:
    iid, _ = inst
    proc = start(stub, iid, "sh", "-c", "sleep 600 & echo parent done")
    assert info(stub, iid, proc.process_id, 20_000).state == pb.PROCESS_EXITED
    t0 = time.monotonic()
    chunks = list(stub.ReadProcessOutput(pb.ReadProcessOutputRequest(instance_id=iid, process_id=proc.process_id),
                                         timeout=30))
    assert b"".join(c.data for c in chunks) == b"parent done\n"
    assert sum(c.eof for c in chunks) == 2, "the output did not end"
    assert time.monotonic() - t0 < 25
    assert works(stub, iid)
