"""Execs and a sandbox's entrypoint as worldrt processes in its instance, through the host's process calls
(each recorded): an exec's id is its process id, its output is read by offset, its stdin written by offset.

Every call here blocks (the host interface does): the router runs them on admitted threads. A wait waits
at most ``WAIT_SLICE_S`` per call, so no thread is held for long by a process that runs for hours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modal_proto import api_pb2

from worldrt.host.api.modal._fstools import command_line
from worldrt.host.api.modal._records import SandboxRecord
from worldrt.host.api.modal._sandboxes import Sandboxes
from worldrt.v1 import host_pb, pb

ENTRYPOINT = "entrypoint"
WAIT_SLICE_S = 10.0
_G = api_pb2.GenericResult
RUNNING = pb.PROCESS_RUNNING


class Processes:
    def __init__(self, sandboxes: Sandboxes) -> None:
        self.sandboxes = sandboxes

    def start(self, record: SandboxRecord, process_id: str, argv: list[str], env: dict[str, str], workdir: str,
              timeout_s: int) -> pb.ProcessInfo:
        request = pb.StartProcessRequest(instance_id=record.instance_id, argv=command_line(argv),
                                         env={**record.env, **env}, cwd=workdir or record.workdir, stdin=True,
                                         timeout_ms=timeout_s * 1000, process_id=process_id)
        return self.sandboxes.call(start_process=request).process

    def wait(self, record: SandboxRecord, process_id: str, wait_s: float) -> pb.ProcessInfo:
        timeout_ms = int(min(max(wait_s, 0.0), WAIT_SLICE_S) * 1000)
        return self.sandboxes.call(wait_process=pb.WaitProcessRequest(
            instance_id=record.instance_id, process_id=process_id, timeout_ms=timeout_ms)).process

    def write(self, record: SandboxRecord, process_id: str, offset: int, data: bytes,
              eof: bool) -> pb.WriteProcessStdinReply:
        return self.sandboxes.call(write_process_stdin=pb.WriteProcessStdinRequest(
            instance_id=record.instance_id, process_id=process_id, offset=offset, data=data, eof=eof)).stdin

    def read(self, record: SandboxRecord, process_id: str, stream: pb.ProcessStream, offset: int,
             on_chunk: Callable[[pb.ProcessOutputChunk], None]) -> host_pb.ProcessOutputEnd:
        """Follow one stream from ``offset``, each chunk to ``on_chunk``, until it ends or the host's slice
        does (then ``ended`` is false and the caller reads on from the offset it was given)."""
        read = pb.ReadProcessOutputRequest(instance_id=record.instance_id, process_id=process_id, stream=stream,
                                           stdout_offset=offset if stream == pb.PROCESS_STDOUT else 0,
                                           stderr_offset=offset if stream == pb.PROCESS_STDERR else 0)

        def sink(event: Any) -> None:
            if isinstance(event, host_pb.InvokeEvent) and event.HasField("process_output"):
                on_chunk(event.process_output)

        end = self.sandboxes.host.call_provider_stream(
            host_pb.ProviderCallRequest(source=self.sandboxes.source, read_process_output=read), sink)
        assert isinstance(end, host_pb.ProcessOutputEnd)
        return end

    def running(self, record: SandboxRecord) -> bool:
        listed = self.sandboxes.call(list_processes=pb.ListProcessesRequest(instance_id=record.instance_id))
        return any(p.state == RUNNING for p in listed.processes.processes)

    # the entrypoint, the sandbox's main process ---------------------------------------------------
    def start_entrypoint(self, record: SandboxRecord, argv: list[str]) -> None:
        self.start(record, ENTRYPOINT, argv, {}, record.workdir, 0)
        record.entrypoint = ENTRYPOINT

    def entrypoint_result(self, record: SandboxRecord, wait_s: float) -> api_pb2.GenericResult | None:
        info = self.wait(record, ENTRYPOINT, wait_s)
        if info.state == RUNNING:
            return None
        if info.state == pb.PROCESS_EXITED:
            status = _G.GENERIC_STATUS_SUCCESS if info.exit_code == 0 else _G.GENERIC_STATUS_FAILURE
            return _G(status=status, exitcode=info.exit_code)
        return _G(status=_G.GENERIC_STATUS_FAILURE, exitcode=128 + info.signal,
                  exception=info.reason or f"killed by signal {info.signal}")
