"""The host's process calls: CallProvider's start_process, write_process_stdin, wait_process,
signal_process and list_processes, and CallProviderStream's read_process_output.

Each goes to the provider of the caller's generator link (the source's, as every CallProvider does) through
the host's router, so it is recorded in the registry and crosses the lattice (bound to the replica that owns
the instance) like any provider call; a failure is raised as the error kind of its status (an offset no
longer kept is OutOfRange, an unknown process NotFound).

Invariants: no process call waits for the instance's turn at its provider; a wait answers within the host's
slice (``WAIT_SLICE_S``: a longer wait answers PROCESS_RUNNING then, and the caller waits again), so no
single call holds a thread for long except an output stream that follows a live process, which the
service admits apart from the other calls (host/_admission.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from contextlib import closing
from typing import Any, cast

from worldrt.errors import DeadlineExceeded
from worldrt.host.routing import Router
from worldrt.host.runtime import CallContext
from worldrt.v1 import host_pb, pb

# The RPC of each process operation of ProviderCallRequest, and the field of ProviderCallReply it answers in.
PROCESS_CALLS: dict[str, tuple[str, str]] = {
    "start_process": ("StartProcess", "process"),
    "write_process_stdin": ("WriteProcessStdin", "stdin"),
    "wait_process": ("WaitProcess", "process"),
    "signal_process": ("SignalProcess", "process"),
    "list_processes": ("ListProcesses", "processes"),
}
PROCESS_OPERATIONS = frozenset({*PROCESS_CALLS, "read_process_output"})
# A process call answers within this (a wait within its own time plus this).
CALL_TIMEOUT_S = 30.0
# The longest one wait_process call waits; a caller waiting longer calls again.
WAIT_SLICE_S = 60.0
# How long one output stream follows a process: then it ends as a no_wait read does (ended false), and a
# caller following longer reads again from the offsets it was given. This bounds how long a reader that
# went away without a word can hold its place at the host.
FOLLOW_SLICE_S = 600.0
_STREAM_NAMES = {pb.PROCESS_STDOUT: "stdout", pb.PROCESS_STDERR: "stderr"}

Sink = Callable[[Any], None]


class Processes:
    """Mixed into Host, whose ``router`` makes the calls."""

    router: Router
    follow_slice_s: float = FOLLOW_SLICE_S

    def _process_target(self, request: host_pb.ProviderCallRequest) -> tuple[str, CallContext]:
        """The provider of ``request.source``'s generator link, and the call's context."""
        context = CallContext(request.verse_id, request.source)
        return self.router.resolve(context, "generator").target_provider, context

    def process_call(self, request: host_pb.ProviderCallRequest, operation: str) -> host_pb.ProviderCallReply:
        """One unary process operation (a key of ``PROCESS_CALLS``) through the source's link."""
        rpc, field = PROCESS_CALLS[operation]
        message = getattr(request, operation)
        timeout_s = CALL_TIMEOUT_S
        if operation == "wait_process":
            if message.timeout_ms > WAIT_SLICE_S * 1000:
                message = pb.WaitProcessRequest(instance_id=message.instance_id, process_id=message.process_id,
                                                timeout_ms=int(WAIT_SLICE_S * 1000))
            timeout_s += message.timeout_ms / 1000
        provider, context = self._process_target(request)
        reply = self.router.send(provider, rpc, message, timeout_s=timeout_s, context=context)
        answer = host_pb.ProviderCallReply()
        getattr(answer, field).CopyFrom(reply)
        return answer

    def process_output(self, request: host_pb.ProviderCallRequest,
                       on_event: Sink | None = None) -> host_pb.ProcessOutputEnd:
        """ReadProcessOutput through the source's link: each chunk to ``on_event`` as a ``process_output``
        event; where each stream's next read starts, and whether every stream read ended."""
        read = request.read_process_output
        streams = ["stdout", "stderr"] if read.stream == pb.PROCESS_STREAM_BOTH else [_STREAM_NAMES[read.stream]]
        position = {"stdout": read.stdout_offset, "stderr": read.stderr_offset}
        ended: set[str] = set()
        provider, context = self._process_target(request)
        started = time.monotonic()
        chunks = cast("Generator[pb.ProcessOutputChunk, None, None]", self.router.send_stream(
            provider, "ReadProcessOutput", read, timeout_s=self.follow_slice_s, context=context))
        try:
            with closing(chunks):  # a sink that raises (its reader went away) cancels the provider's stream
                for chunk in chunks:
                    name = _STREAM_NAMES.get(chunk.stream)
                    if name is None:
                        continue
                    position[name] = chunk.offset + len(chunk.data)
                    if chunk.eof:
                        ended.add(name)
                    if on_event is not None:
                        on_event(host_pb.InvokeEvent(process_output=chunk))
        except DeadlineExceeded:
            if time.monotonic() - started < self.follow_slice_s * 0.9:
                raise
            # The slice is over: the stream ends as a no_wait read does, and its reader reads again from here.
        return host_pb.ProcessOutputEnd(stdout_offset=position["stdout"], stderr_offset=position["stderr"],
                                        ended=set(streams) <= ended)
