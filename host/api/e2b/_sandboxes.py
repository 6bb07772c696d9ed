"""E2B's operations on worldrt: each one the provider call(s) it stands for, made through the host with
source ``e2b-api`` (so it goes over the API's generator link to the morph provider, under the host's links
and limits, and is recorded), plus the facade's records.

A sandbox is a morph instance, so a fork (``Branch`` of a snapshot) and a pause (a snapshot, then the
instance stopped; ``connect`` starts it again from the snapshot) keep the files and the interpreter's
memory. Every method blocks on the host: the HTTP layer runs them on threads admitted by ``Admission``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from worldrt.errors import FailedPrecondition, InvalidArgument, NotFound, Reason, WorldError
from worldrt.host import HostAPI
from worldrt.host.api.e2b._paths import to_sandbox_cwd, to_workspace
from worldrt.host.api.e2b._records import Records, Sandbox, Snapshot
from worldrt.v1 import host_pb, pb

log = logging.getLogger("worldrt.api.e2b")

SOURCE = "e2b-api"
PROVIDER = "morph"
# Templates every sandbox may start from: worldrt's default image (Python, its standard library, numpy, a shell).
TEMPLATES = ("base", "code-interpreter-v1", "code-interpreter")
DEFAULT_TIMEOUT_S = 300
MAX_TIMEOUT_S = 24 * 3600
MAX_FORKS = 20
# A paused sandbox's snapshot is kept this long while unused (E2B keeps paused sandboxes for days).
_PAUSED_TTL_S = 7 * 24 * 3600
_SLICE_MS = 60_000  # the host answers a longer wait_process with PROCESS_RUNNING after its slice


def _gone(error: WorldError) -> bool:
    """Whether the provider's reason says the instance itself is unknown or stopped (a missing file is
    NotFound too, and leaves the sandbox alone)."""
    return error.reason in (Reason.INSTANCE_GONE, Reason.INSTANCE_NOT_FOUND)


def _timeout(value: int | None) -> int:
    seconds = DEFAULT_TIMEOUT_S if value is None else value
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise InvalidArgument(f"timeout must be between 1 and {MAX_TIMEOUT_S} seconds, got {seconds}")
    return seconds


def _strings(name: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"{name} must be an object of strings")
    return dict(value)


class E2bApi:
    def __init__(self, host: HostAPI, *, source: str = SOURCE) -> None:
        self.host = host
        self.source = source
        self.records = Records()
        self._stop = threading.Event()
        self._expiry: threading.Thread | None = None

    # plumbing --------------------------------------------------------------------------------------
    def link(self) -> None:
        """Link this API's generator calls to morph, unless the host already has a link for it."""
        for link in self.host.list_links(host_pb.ListLinksRequest()).links:
            if link.source_component == self.source and "generator" in link.interfaces:
                return
        self.host.put_link(pb.LinkConfig(source_component=self.source, interfaces=["generator"],
                                         target_provider=PROVIDER))

    def call(self, **request: Any) -> host_pb.ProviderCallReply:
        return self.host.call_provider(host_pb.ProviderCallRequest(source=self.source, **request))

    def running(self, sandbox_id: str) -> Sandbox:
        """The sandbox, which must be running (a paused one answers with how to resume it)."""
        sandbox = self.records.get(sandbox_id)
        if not sandbox.instance_id:
            raise FailedPrecondition(f"sandbox {sandbox_id} is paused: resume it with Sandbox.connect(sandbox_id)")
        return sandbox

    def on_instance(self, sandbox: Sandbox, fn: Callable[[str], Any]) -> Any:
        """``fn(instance_id)``; when worldrt says the instance is gone the sandbox is gone here too (404)."""
        try:
            return fn(sandbox.instance_id)
        except WorldError as exc:
            if not _gone(exc):
                raise
            self.records.drop(sandbox.id)
            raise NotFound(f"sandbox \"{sandbox.id}\" is not running anymore: {exc.message}") from None

    # sandboxes ---------------------------------------------------------------------------------------
    def create(self, template: str, timeout: int | None, metadata: Any, envs: Any, auto_pause: bool,
               internet: bool | None) -> dict[str, Any]:
        if internet:
            raise InvalidArgument("allow_internet_access=True cannot be served: worldrt sandboxes have no network "
                                  "(bubblewrap --unshare-net); create the sandbox without it")
        seconds = _timeout(timeout)
        meta, env = _strings("metadata", metadata), _strings("envVars", envs)
        snap = self.records.snapshot(template)
        if snap is not None:
            request = pb.StartRequest(snapshot_id=snap.id, metadata=meta)
            env = {**snap.envs, **env}
        elif template in TEMPLATES:
            request = pb.StartRequest(language="python", metadata=meta)
        else:
            raise NotFound(f"template '{template}' not found: here a sandbox starts from 'base' or "
                           f"'code-interpreter-v1' (worldrt's default image) or from a snapshot this server took "
                           f"(create_snapshot); custom template builds are not supported")
        instance = self.call(start=request).instance
        return self.records.add(Sandbox(Records.new_id(), instance.instance_id, Records.new_token(), Records.new_token(),
                                        template, env, meta, seconds, time.time() + seconds, auto_pause)).to_json()

    def info(self, sandbox_id: str) -> dict[str, Any]:
        return self.records.get(sandbox_id).detail()

    def listed(self, metadata: dict[str, str], states: list[str]) -> list[dict[str, Any]]:
        return [s.detail() for s in self.records.listed()
                if all(s.metadata.get(k) == v for k, v in metadata.items()) and (not states or s.state in states)]

    def set_timeout(self, sandbox_id: str, timeout: int) -> None:
        sandbox = self.records.get(sandbox_id)
        sandbox.timeout_s = _timeout(timeout)
        sandbox.end_at = time.time() + sandbox.timeout_s

    def kill(self, sandbox_id: str) -> None:
        sandbox = self.records.drop(sandbox_id)
        if sandbox is None:
            raise NotFound(f"sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")
        self._release(sandbox)

    def _release(self, sandbox: Sandbox) -> None:
        for member in (sandbox.instance_id, sandbox.paused_snapshot):
            if member:
                self.quietly_stop(member)

    def pause(self, sandbox_id: str) -> None:
        """A snapshot of the instance (its files and its interpreter's memory), then the instance stopped."""
        sandbox = self.records.get(sandbox_id)
        with sandbox.lock:
            if not sandbox.instance_id:
                raise FailedPrecondition(f"sandbox {sandbox_id} is already paused")
            ref = self.on_instance(sandbox, lambda iid: self.call(
                snapshot=pb.SnapshotRequest(instance_id=iid, ttl_s=_PAUSED_TTL_S)).snapshot)
            instance_id = sandbox.instance_id
            sandbox.paused_snapshot, sandbox.instance_id = ref.snapshot_id, ""
            sandbox.end_at = time.time() + _PAUSED_TTL_S  # paused: kept as long as its snapshot, not ended at its timeout
            sandbox.pids.clear()
            sandbox.stdin_offsets.clear()
        self.quietly_stop(instance_id)

    def connect(self, sandbox_id: str, timeout: int | None) -> dict[str, Any]:
        """The sandbox, resumed from its pause snapshot first when it is paused; its timeout renewed if given."""
        sandbox = self.records.get(sandbox_id)
        with sandbox.lock:
            if not sandbox.instance_id:
                try:
                    instance = self.call(start=pb.StartRequest(snapshot_id=sandbox.paused_snapshot)).instance
                except NotFound as exc:
                    self.records.drop(sandbox_id)
                    raise NotFound(f"paused sandbox {sandbox_id} is gone: {exc.message}") from None
                snapshot, sandbox.instance_id, sandbox.paused_snapshot = sandbox.paused_snapshot, instance.instance_id, ""
                self.quietly_stop(snapshot)
                resumed = True
            else:
                resumed = False
            if timeout is not None:
                sandbox.timeout_s = _timeout(timeout)
            # A resumed sandbox runs for its timeout from now; a running one is extended, never shortened.
            later = time.time() + sandbox.timeout_s
            sandbox.end_at = later if resumed else max(sandbox.end_at, later)
        return sandbox.to_json()

    def create_snapshot(self, sandbox_id: str, name: str | None) -> dict[str, Any]:
        """A snapshot of the running sandbox that ``Sandbox.create(template=ID)`` starts from."""
        sandbox = self.running(sandbox_id)
        ref = self.on_instance(sandbox, lambda iid: self.call(
            snapshot=pb.SnapshotRequest(instance_id=iid, ttl_s=_PAUSED_TTL_S)).snapshot)
        names = [name] if name else [ref.snapshot_id]
        return self.records.add_snapshot(Snapshot(ref.snapshot_id, names, sandbox.template, dict(sandbox.envs),
                                                   sandbox.id)).to_json()

    def list_snapshots(self, sandbox_id: str | None, name: str | None = None) -> list[dict[str, Any]]:
        """The snapshots taken here, of ``sandbox_id`` only and named (or with the id) ``name`` only when given."""
        return [s.to_json() for s in self.records.listed_snapshots(sandbox_id)
                if not name or name == s.id or name in s.names]

    def delete_snapshot(self, snapshot_id: str) -> None:
        snap = self.records.snapshot(snapshot_id)
        if snap is None:
            raise NotFound(f"template '{snapshot_id}' not found")
        self.records.drop_snapshot(snap.id)
        self.quietly_stop(snap.id)

    def fork(self, sandbox_id: str, count: int, timeout: int | None) -> list[dict[str, Any]]:
        """``count`` sandboxes branched from a snapshot of this one (Infinibranch: each keeps the files and the
        interpreter's memory); each reported on its own, a sandbox or an error."""
        if not 1 <= count <= MAX_FORKS:
            raise InvalidArgument(f"count must be between 1 and {MAX_FORKS}, got {count}")
        seconds = _timeout(timeout)
        parent = self.running(sandbox_id)
        ref = self.on_instance(parent, lambda iid: self.call(snapshot=pb.SnapshotRequest(instance_id=iid)).snapshot)
        try:
            reply = self.call(branch=pb.BranchRequest(snapshot_id=ref.snapshot_id, count=count)).branch
        finally:
            self.quietly_stop(ref.snapshot_id)
        results: list[dict[str, Any]] = [{} for _ in range(count)]
        made = iter(reply.instances)
        failed = {e.index: e.message for e in reply.errors}
        for index in range(count):
            if index in failed:
                results[index] = {"error": {"code": 503, "message": f"fork {index} did not start: {failed[index]}"}}
                continue
            instance = next(made)
            child = self.records.add(Sandbox(Records.new_id(), instance.instance_id, Records.new_token(),
                                             Records.new_token(), parent.template, dict(parent.envs),
                                             dict(parent.metadata), seconds, time.time() + seconds))
            results[index] = {"sandbox": child.to_json()}
        return results

    # files -------------------------------------------------------------------------------------------
    def write_file(self, sandbox_id: str, path: str, data: bytes) -> dict[str, Any]:
        sandbox = self.running(sandbox_id)
        relative = to_workspace(path)
        if not relative:
            raise InvalidArgument(f"{path!r} is the working directory itself, not a file")
        self.on_instance(sandbox, lambda iid: self.host.write_files(host_pb.HostWriteFilesRequest(
            provider=PROVIDER, files=pb.WriteFilesRequest(instance_id=iid, files=[pb.FileEntry(path=relative,
                                                                                            data=data)]))))
        return {"name": relative.rpartition("/")[2], "type": "file", "path": path}

    def read_file(self, sandbox_id: str, path: str) -> bytes:
        sandbox = self.running(sandbox_id)
        relative = to_workspace(path)
        parts: list[bytes] = []

        def chunk(event: Any) -> None:
            parts.append(event.data)

        self.on_instance(sandbox, lambda iid: self.host.read_file(host_pb.HostReadFileRequest(
            provider=PROVIDER, read=pb.ReadFileRequest(instance_id=iid, path=relative)), chunk))
        return b"".join(parts)

    def file_op(self, sandbox_id: str, fn: Callable[[str], Any]) -> Any:
        """``fn(instance_id)`` for one of the host's file calls on the running sandbox."""
        sandbox = self.running(sandbox_id)
        return self.on_instance(sandbox, fn)

    # processes ---------------------------------------------------------------------------------------
    def start_process(self, sandbox_id: str, cmd: str, args: list[str], envs: dict[str, str], cwd: str | None,
                      stdin: bool, tag: str, timeout_ms: int = 0) -> pb.ProcessInfo:
        sandbox = self.running(sandbox_id)
        argv = [cmd, *args]
        if cmd in ("/bin/bash", "bash") and args[:2] == ["-l", "-c"]:
            # The SDK wraps every command in a login shell; the login profile would reset the image's PATH.
            argv = [cmd, *args[1:]]
        request = pb.StartProcessRequest(argv=argv, env={**sandbox.envs, **envs}, cwd=to_sandbox_cwd(cwd),
                                         stdin=stdin, tag=tag, timeout_ms=timeout_ms)

        def start(iid: str) -> pb.ProcessInfo:
            request.instance_id = iid
            return self.call(start_process=request).process

        info: pb.ProcessInfo = self.on_instance(sandbox, start)
        with sandbox.lock:
            sandbox.pids[info.pid] = info.process_id
        return info

    def process_id(self, sandbox: Sandbox, pid: int) -> str:
        with sandbox.lock:
            found = sandbox.pids.get(pid)
        if found is None:
            raise NotFound(f"process with pid {pid} not found in sandbox {sandbox.id}")
        return found

    def read_output(self, sandbox_id: str, process_id: str, offsets: tuple[int, int]
                    ) -> tuple[list[pb.ProcessOutputChunk], host_pb.ProcessOutputEnd]:
        """What the process wrote past ``offsets`` (stdout, stderr) so far, without waiting for more."""
        sandbox = self.running(sandbox_id)
        chunks: list[pb.ProcessOutputChunk] = []

        def read(iid: str) -> host_pb.ProcessOutputEnd:
            request = host_pb.ProviderCallRequest(source=self.source, read_process_output=pb.ReadProcessOutputRequest(
                instance_id=iid, process_id=process_id, stdout_offset=offsets[0], stderr_offset=offsets[1],
                no_wait=True))
            end = self.host.call_provider_stream(request, lambda event: chunks.append(event.process_output))
            assert isinstance(end, host_pb.ProcessOutputEnd)
            return end

        end: host_pb.ProcessOutputEnd = self.on_instance(sandbox, read)
        return chunks, end

    def wait_process(self, sandbox_id: str, process_id: str, timeout_ms: int) -> pb.ProcessInfo:
        sandbox = self.running(sandbox_id)
        info: pb.ProcessInfo = self.on_instance(sandbox, lambda iid: self.call(wait_process=pb.WaitProcessRequest(
            instance_id=iid, process_id=process_id, timeout_ms=min(timeout_ms, _SLICE_MS))).process)
        return info

    def list_processes(self, sandbox_id: str) -> list[pb.ProcessInfo]:
        sandbox = self.running(sandbox_id)
        reply = self.on_instance(sandbox, lambda iid: self.call(
            list_processes=pb.ListProcessesRequest(instance_id=iid)).processes)
        running = [p for p in reply.processes if p.state == pb.PROCESS_RUNNING]
        with sandbox.lock:
            for p in running:
                sandbox.pids.setdefault(p.pid, p.process_id)
        return running

    def write_stdin(self, sandbox_id: str, pid: int, data: bytes, eof: bool) -> None:
        """``data`` onto the process's stdin after what was accepted before (and EOF after it when ``eof``)."""
        sandbox = self.running(sandbox_id)
        process_id = self.process_id(sandbox, pid)
        with sandbox.lock:
            offset = sandbox.stdin_offsets.get(process_id, 0)
            reply = self.on_instance(sandbox, lambda iid: self.call(write_process_stdin=pb.WriteProcessStdinRequest(
                instance_id=iid, process_id=process_id, offset=offset, data=data, eof=eof)).stdin)
            sandbox.stdin_offsets[process_id] = reply.offset

    def signal(self, sandbox_id: str, pid: int, signal: int) -> None:
        sandbox = self.running(sandbox_id)
        process_id = self.process_id(sandbox, pid)
        self.on_instance(sandbox, lambda iid: self.call(signal_process=pb.SignalProcessRequest(
            instance_id=iid, process_id=process_id, signal=signal)))

    # code interpreter --------------------------------------------------------------------------------
    def run_python(self, sandbox_id: str, code: str, on_event: Callable[[pb.ExecutionEvent], None],
                   timeout_ms: int) -> pb.ExecutionResult:
        """``code`` in the instance's interpreter (its memory kept between calls), each output event to
        ``on_event`` as it comes; its result. It blocks until the run ends."""
        sandbox = self.running(sandbox_id)

        def run(iid: str) -> pb.ExecutionResult:
            request = host_pb.ProviderCallRequest(source=self.source, execute=pb.ExecuteRequest(
                instance_id=iid, language="python", code=code, timeout_ms=timeout_ms))
            result = self.host.call_provider_stream(request, lambda event: on_event(event.execution))
            assert isinstance(result, pb.ExecutionResult)
            return result

        result: pb.ExecutionResult = self.on_instance(sandbox, run)
        return result

    # lifetime ----------------------------------------------------------------------------------------
    def quietly_stop(self, member_id: str) -> None:
        try:
            self.call(stop=pb.InstanceRef(instance_id=member_id))
        except WorldError as exc:
            if not (_gone(exc) or isinstance(exc, NotFound)):
                log.warning("could not stop %s: %s", member_id, exc.message)

    def expire(self, now: float | None = None) -> int:
        """End (or pause, with auto_pause) the sandboxes whose time is up; how many."""
        due = self.records.expired(time.time() if now is None else now)
        for sandbox in due:
            if sandbox.auto_pause and sandbox.instance_id:
                try:
                    self.pause(sandbox.id)
                    log.info("sandbox %s reached its timeout and was paused (auto_pause)", sandbox.id)
                    continue
                except WorldError as exc:
                    log.warning("could not pause sandbox %s at its timeout: %s", sandbox.id, exc.message)
            if self.records.drop(sandbox.id) is not None:
                log.info("sandbox %s reached its timeout", sandbox.id)
                self._release(sandbox)
        return len(due)

    def start_expiry(self, interval_s: float = 1.0) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.expire()
                except Exception:
                    log.exception("timeout expiry failed")

        self._expiry = threading.Thread(target=loop, name="e2b-api-timeout", daemon=True)
        self._expiry.start()

    def close(self) -> int:
        """Stop every instance and snapshot this API made; how many sandboxes and snapshots it released."""
        self._stop.set()
        if self._expiry is not None:
            self._expiry.join(5)
        released = 0
        for sandbox in self.records.listed():
            if self.records.drop(sandbox.id) is not None:
                self._release(sandbox)
                released += 1
        for snap_id in list(self.records.snapshots):
            if self.records.drop_snapshot(snap_id) is not None:
                self.quietly_stop(snap_id)
                released += 1
        return released
