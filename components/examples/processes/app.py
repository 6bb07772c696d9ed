"""A verse that runs a long-lived process in an instance: starts it, feeds its stdin by offset, pulls its
output by offset until it ends, waits for it and lists the instance's processes (worldrt:verse@0.2.0).

``run(verse_id, args)`` with args JSON::

    {"instance_id": "new" | ID,        # "new": one it starts and stops itself
     "argv": [...], "env": {...}, "cwd": "", "timeout_ms": 0, "tag": "",
     "stdin": ["piece", ...] | null,   # written in order, each at the offset the last reply gave; null: no stdin
     "retry_first": false,             # write the first piece twice at the same offset (applied once)
     "signal": null | N,               # send signal N right after the start (0: SIGKILL)
     "stream": "both" | "stdout" | "stderr",
     "stdout_offset": 0, "stderr_offset": 0,
     "max_bytes": 0, "wait_ms": 10000}  # the bounds of each read

returns JSON of what it saw: each stream's output (text, undecodable bytes replaced), the size of each
read, the offsets it ended at, the final state, exit code and signal, and the tags and states listed.
A provider's error is its err, as "CODE: message".
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import generator
from wit_world.imports.types import (
    InstanceRef,
    ListProcessesRequest,
    ProcessStream,
    ReadProcessOutputRequest,
    SignalProcessRequest,
    StartProcessRequest,
    StartRequest,
    WaitProcessRequest,
    WriteProcessStdinRequest,
)

STREAMS = {"both": ProcessStream.BOTH, "stdout": ProcessStream.STDOUT, "stderr": ProcessStream.STDERR}
MAX_READS = 100_000


def _call(fn, request):
    try:
        return fn(request)
    except Err as exc:
        raise Err(f"{exc.value.code}: {exc.value.message}") from None


def _state(info) -> str:
    return info.state.name.lower().replace("_", "-")


class WitWorld(wit_world.WitWorld):
    def run(self, verse_id: int, args: str) -> str:
        spec = json.loads(args or "{}")
        iid = spec.get("instance_id", "new")
        own = iid == "new"
        if own:
            iid = _call(generator.start, StartRequest(image="", snapshot_id="", language="python", ttl_s=0,
                                                      limits=None, metadata=[])).instance_id
        try:
            return json.dumps(self._run(iid, spec))
        finally:
            if own:
                _call(generator.stop, InstanceRef(instance_id=iid))

    def _run(self, iid: str, spec: dict) -> dict:
        pieces = spec.get("stdin")
        proc = _call(generator.start_process, StartProcessRequest(
            instance_id=iid, argv=list(spec["argv"]), env=sorted(spec.get("env", {}).items()),
            cwd=spec.get("cwd", ""), stdin=pieces is not None, timeout_ms=int(spec.get("timeout_ms", 0)),
            tag=spec.get("tag", ""), process_id=""))
        pid = proc.process_id
        if spec.get("signal") is not None:
            _call(generator.signal_process, SignalProcessRequest(instance_id=iid, process_id=pid,
                                                                 signal=int(spec["signal"]), leader_only=False))
        stdin_offset = 0
        if pieces is not None:
            for i, piece in enumerate(pieces):
                data = piece.encode()
                for _ in range(2 if i == 0 and spec.get("retry_first") else 1):
                    reply = _call(generator.write_process_stdin, WriteProcessStdinRequest(
                        instance_id=iid, process_id=pid, offset=stdin_offset, data=data, eof=False))
                stdin_offset = reply.offset
            stdin_offset = _call(generator.write_process_stdin, WriteProcessStdinRequest(
                instance_id=iid, process_id=pid, offset=stdin_offset, data=b"", eof=True)).offset

        out = {"stdout": b"", "stderr": b""}
        reads = []
        offsets = {"stdout": int(spec.get("stdout_offset", 0)), "stderr": int(spec.get("stderr_offset", 0))}
        ended = False
        while not ended and len(reads) < MAX_READS:
            got = _call(generator.read_process_output, ReadProcessOutputRequest(
                instance_id=iid, process_id=pid, stream=STREAMS[spec.get("stream", "both")],
                stdout_offset=offsets["stdout"], stderr_offset=offsets["stderr"],
                max_bytes=int(spec.get("max_bytes", 0)), wait_ms=int(spec.get("wait_ms", 10_000))))
            size = 0
            for chunk in got.chunks:
                name = "stdout" if chunk.stream == ProcessStream.STDOUT else "stderr"
                if chunk.offset != offsets[name]:
                    raise Err(f"{name} chunk at {chunk.offset}, expected {offsets[name]}")
                out[name] += bytes(chunk.data)
                offsets[name] += len(chunk.data)
                size += len(chunk.data)
            if (offsets["stdout"], offsets["stderr"]) != (got.stdout_offset, got.stderr_offset):
                raise Err(f"next offsets {got.stdout_offset}, {got.stderr_offset} do not follow the chunks")
            reads.append(size)
            ended = got.ended

        done = _call(generator.wait_process, WaitProcessRequest(instance_id=iid, process_id=pid, timeout_ms=20_000))
        listed = _call(generator.list_processes, ListProcessesRequest(instance_id=iid)).processes
        return {
            "process_id": pid,
            "stdout": out["stdout"].decode("utf-8", "replace"),
            "stderr": out["stderr"].decode("utf-8", "replace"),
            "reads": reads,
            "offsets": offsets,
            "stdin_offset": stdin_offset,
            "state": _state(done),
            "exit_code": done.exit_code,
            "signal": done.signal,
            "output_ended": done.output_ended,
            "listed": [[p.tag, _state(p)] for p in listed if p.process_id == pid],
        }
