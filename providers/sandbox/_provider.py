"""The gRPC side shared by providers whose instances live in sandboxes (morph, modal)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from worldrt import errors as err
from worldrt import telemetry
from worldrt.providers import Call, Provider
from worldrt.providers.sandbox import _builder
from worldrt.providers.sandbox._images import OPERATOR, ImageInfo, ImageStore, check_owner
from worldrt.providers.sandbox._instances import Done, InstanceEngine, LiveInstance, Output, RunInput
from worldrt.providers.sandbox._processes import (
    MAX_IN_FLIGHT,
    MAX_READERS_PER_INSTANCE,
    MAX_READERS_PER_PROCESS,
    Process,
    ProcessSettings,
)
from worldrt.providers.sandbox._sandbox import MIB, Limits
from worldrt.providers.sandbox._watch import WatchLimits
from worldrt.providers.sandbox._workspace import NewFile, Opened
from worldrt.v1 import pb

_TOOLCHAINS = {"js": ("node",), "cpp": ("g++",)}
_EVENT_KINDS = {"ready": pb.FILE_EVENT_READY, "create": pb.FILE_EVENT_CREATE, "modify": pb.FILE_EVENT_MODIFY,
                "remove": pb.FILE_EVENT_REMOVE, "rename": pb.FILE_EVENT_RENAME, "chmod": pb.FILE_EVENT_CHMOD,
                "overflow": pb.FILE_EVENT_OVERFLOW, "ended": pb.FILE_EVENT_ENDED}
# What a failed Execute's partial result may carry in its trailer: gRPC refuses metadata over 8 KiB.
PARTIAL_OUTPUT_CHARS = 1536
# What one ReadFileChunk (a component's read-file) returns at most; ReadFile streams more.
MAX_CHUNK_READ = 8 * MIB
DEFAULT_MAX_STDIN_MB = 8


def machine_memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def max_limits(options: dict[str, str]) -> Limits:
    """The largest limits a request may ask for: memory and disk (which lives in memory) within this
    machine's, processes and cpu seconds within the operator's (``--set max_processes=...``)."""
    memory = machine_memory_mb()
    return Limits(memory_mb=memory, cpu_s=int(options.get("max_cpu_s", 3600)),
                  processes=int(options.get("max_processes", 1024)), file_size_mb=memory,
                  disk_mb=int(options.get("max_disk_mb", memory // 2)))


def available_languages() -> list[str]:
    """python and shell always; others only where their toolchain is installed under /usr (visible inside)."""
    found = ["python", "shell"]
    for language, tools in _TOOLCHAINS.items():
        paths = [shutil.which(t, path="/usr/local/bin:/usr/bin:/bin") for t in tools]
        if all(p and os.path.realpath(p).startswith("/usr/") for p in paths):
            found.append(language)
    return found


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


LIMIT_NAMES = ("memory_mb", "cpu_s", "processes", "file_size_mb", "disk_mb")


def link_defaults(values: Mapping[str, str]) -> Limits:
    """The default limits a link sets for its caller (link values ``memory_mb=...`` and so on)."""
    defaults = Limits()
    chosen = {}
    for name in LIMIT_NAMES:
        if name in values:
            try:
                chosen[name] = int(values[name])
            except ValueError:
                raise err.FailedPrecondition(f"the link's value {name}={values[name]!r} is not a whole number; "
                                             f"put the link again with --set {name}=N") from None
            if chosen[name] <= 0:
                raise err.FailedPrecondition(f"the link's value {name} must be above 0, got {chosen[name]}")
    return replace(defaults, **chosen)


def limits_from(request: pb.Limits | None, maximum: Limits, default: Limits | None = None) -> Limits:
    """Limits from a request: 0 means the default (``default``, else Limits()); negative or above the
    maximum is an error."""
    default = default or Limits()
    values = {}
    for name in LIMIT_NAMES:
        given = getattr(request, name) if request is not None else 0
        cap = getattr(maximum, name)
        if given < 0 or given > cap:
            raise err.InvalidArgument(f"limits.{name} must be between 0 (default) and {cap} on this machine, "
                                      f"got {given}")
        values[name] = given or getattr(default, name)
        if values[name] > cap:
            raise err.InvalidArgument(f"the link's default {name} {values[name]} is above this machine's {cap}")
    if values["memory_mb"] < 64:
        raise err.InvalidArgument("limits.memory_mb must be at least 64 (a Python interpreter needs it)")
    if values["memory_mb"] + values["disk_mb"] > maximum.memory_mb:
        raise err.InvalidArgument(f"limits.memory_mb + limits.disk_mb (the disk lives in memory) must fit this "
                                  f"machine's {maximum.memory_mb} MiB, got {values['memory_mb'] + values['disk_mb']}")
    return Limits(**values)


def _head(text: str) -> str:
    if len(text) <= PARTIAL_OUTPUT_CHARS:
        return text
    return text[:PARTIAL_OUTPUT_CHARS] + f"\n[worldrt: {len(text) - PARTIAL_OUTPUT_CHARS} more characters not shown]\n"


def image_store(state_dir: Path, values: Mapping[str, str]) -> ImageStore:
    """The images of the daemons of one state folder (``--set images_dir=...`` names another)."""
    return ImageStore(Path(values["images_dir"])) if values.get("images_dir") else ImageStore.beside(state_dir)


def image_pb(info: ImageInfo, cached: bool = False) -> pb.Image:
    return pb.Image(digest=info.digest, names=info.names, python=info.python, packages=info.packages,
                    requested=info.requested, size_bytes=info.size_bytes, created_at=timestamp(info.created_at),
                    source=info.source, files=info.files, cached=cached, build_s=info.build_s,
                    index_url=info.index_url, owners=info.owners, layer_digest=info.layer_digest)


def image_owner(call: Call) -> str:
    """Who a call's image names belong to: its x-worldrt-owner, else the operator (the host's own calls)."""
    return check_owner(call.owner) if call.owner else OPERATOR


def file_info(entry: dict[str, Any]) -> pb.FileInfo:
    """A FileInfo of an entry the instance described (checked by the workspace module)."""
    info = pb.FileInfo(name=entry["name"], path=entry["path"], size=entry["size"], mode=entry["mode"],
                       kind=entry["kind"], symlink_target=entry.get("target", ""), uid=entry.get("uid", 0),
                       gid=entry.get("gid", 0))
    info.modified_at.FromNanoseconds(entry["mtime_ns"])
    return info


class SandboxedProvider(Provider):
    engine: InstanceEngine

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._languages = available_languages()
        self.max_limits = max_limits(self.options.values)
        self.images = image_store(self.options.state_dir, self.options.values)
        self._building = asyncio.Lock()
        self.process_settings = ProcessSettings.from_values(self.options.values)
        self.watch_limits = WatchLimits.from_options(self.options.values)

    async def open(self) -> None:
        self.engine.process_settings = self.process_settings
        await self.engine.open()
        self.watch_gauges()

    def watch_gauges(self) -> None:
        """With metrics on: instances, snapshots, processes and warm sandboxes, read at each scrape."""
        if not telemetry.metrics_on():
            return
        engine, name = self.engine, (self.provider_id,)
        telemetry.watch("worldrt_sandbox_instances", lambda: {name: len(engine.instances)})
        telemetry.watch("worldrt_sandbox_snapshots", lambda: {name: len(getattr(engine, "snapshots", ()))})
        telemetry.watch("worldrt_sandbox_processes", lambda: {
            name: sum(len(inst.running_processes()) for inst in list(engine.instances.values()))})
        telemetry.watch("worldrt_warm_pool_size", lambda: {name: engine.warm_count()})
        engine.on_pool_miss = lambda: telemetry.inc("worldrt_warm_pool_misses_total", self.provider_id)

    def processes_capability(self, snapshots_carry: str) -> dict[str, object]:
        """What Capabilities says of processes: their limits, and what a snapshot keeps of them."""
        s = self.process_settings
        return {"rpcs": ["StartProcess", "ReadProcessOutput", "WriteProcessStdin", "WaitProcess", "SignalProcess",
                         "ListProcesses"],
                "output_cap_bytes": s.output_cap, "output_instance_bytes": s.instance_output,
                "output_total_bytes": s.total_output, "output_streams_per_process": MAX_READERS_PER_PROCESS,
                "output_streams_per_instance": MAX_READERS_PER_INSTANCE,
                "requests_waiting_per_instance": MAX_IN_FLIGHT, "stdin_pending_bytes": s.stdin_pending,
                "output_drain_s_after_exit": s.drain_s, "ended_kept_per_instance": s.kept_ended,
                "snapshots": f"carry {snapshots_carry}, not the processes running in the instance (a Branch or "
                             f"Snapshot reply names them in processes_not_carried)",
                "lifetime": "a process outlives the call that started it and ends with its instance (its "
                            "cgroup: detached and double-forked children too)"}

    async def close(self) -> int:
        return await self.engine.close()

    def languages(self) -> list[str]:
        return list(self._languages)

    def instance_pb(self, inst: LiveInstance, status: pb.InstanceStatus = pb.RUNNING) -> pb.Instance:
        return pb.Instance(
            instance_id=inst.id, provider_id=self.provider_id, snapshot_id=inst.snapshot_id, status=status,
            created_at=timestamp(inst.created_at), metadata=inst.metadata,
            limits=pb.Limits(memory_mb=inst.limits.memory_mb, cpu_s=inst.limits.cpu_s,
                             processes=inst.limits.processes, file_size_mb=inst.limits.file_size_mb,
                             disk_mb=inst.limits.disk_mb),
            image=inst.image,
        )

    def check_language(self, language: str) -> str:
        language = language or "python"
        if language not in self._languages:
            raise err.InvalidArgument(f"language {language!r} is not available on {self.provider_id} here; "
                                      f"available: {', '.join(self._languages)}")
        return language

    def check_start(self, request: pb.StartRequest, call: Call) -> Limits:
        """The instance's limits: the request's, else its link's defaults, else the engine's."""
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        return limits_from(request.limits if request.HasField("limits") else None, self.max_limits,
                           link_defaults(call.values))

    async def stop(self, request: pb.InstanceRef, call: Call) -> pb.Instance:
        inst = await self.engine.stop(request.instance_id)
        assert isinstance(inst, LiveInstance)
        return self.instance_pb(inst, pb.STOPPED)

    async def list_instances(self, request: pb.ListInstancesRequest, call: Call) -> pb.ListInstancesReply:
        """Every instance this daemon holds, oldest first."""
        live = sorted(self.engine.instances.values(), key=lambda inst: inst.created_at)
        return pb.ListInstancesReply(instances=[self.instance_pb(inst) for inst in live])

    def runs(self, request: pb.ExecuteRequest, language: str, *, collect: bool) -> AsyncIterator[Output | Done]:
        """The engine's run of the request's code: output as it comes, then the result (a span with tracing on)."""
        runs = self.engine.execute(request.instance_id, request.code, language, request.timeout_ms,
                                   dict(request.env), collect=collect, argv=self.check_argv(request),
                                   given=self.run_input(request))
        if not telemetry.tracing():
            return runs
        return telemetry.traced(runs, "sandbox.exec", {"worldrt.provider": self.provider_id,
                                                       "worldrt.instance_id": request.instance_id,
                                                       "worldrt.language": language})

    def run_input(self, request: pb.ExecuteRequest) -> RunInput:
        """The run's working folder, stdin (within ``max_stdin_mb``, 8 MiB by default) and output form."""
        cap = int(self.options.values.get("max_stdin_mb", DEFAULT_MAX_STDIN_MB)) * MIB
        if len(request.stdin) > cap:
            raise err.ResourceExhausted(f"stdin is {len(request.stdin)} bytes, above the {cap} bytes a run may be "
                                        f"given; write a file (WriteFiles) and read it instead")
        return RunInput(request.cwd, request.stdin or None,
                        request.output_bytes)

    @staticmethod
    def check_argv(request: pb.ExecuteRequest) -> list[str]:
        argv = list(request.argv)
        if argv and (not argv[0] or any("\0" in a for a in argv)):
            raise err.InvalidArgument("argv[0] must name a program, and no argument may hold a NUL")
        return argv

    def result_of(self, done: Done, call: Call, instance_id: str) -> pb.ExecutionResult:
        call.meter.sandbox_cpu_ms = done.frame.get("cpu_ms", 0.0)
        return pb.ExecutionResult(
            instance_id=instance_id, exit_code=done.frame.get("exit_code", 0),
            value_json=done.frame.get("value_json", ""), error=done.frame.get("error", ""),
            duration_ms=done.frame.get("duration_ms", 0.0))

    async def execute_stream(self, request: pb.ExecuteRequest, call: Call) -> AsyncIterator[pb.ExecutionEvent]:
        async for item in self.runs(request, self.check_language(request.language), collect=False):
            if isinstance(item, Output):
                if isinstance(item.text, bytes):
                    yield pb.ExecutionEvent(stdout_bytes=item.text) if item.stream == "stdout" else \
                        pb.ExecutionEvent(stderr_bytes=item.text)
                else:
                    yield pb.ExecutionEvent(stdout=item.text) if item.stream == "stdout" else pb.ExecutionEvent(
                        stderr=item.text)
            else:
                yield pb.ExecutionEvent(result=self.result_of(item, call, request.instance_id))

    async def execute(self, request: pb.ExecuteRequest, call: Call) -> pb.ExecutionResult:
        """One result, from a run that sends its output with it (the engine streams only a flood)."""
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        raw: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        done: Done | None = None
        try:
            async for item in self.runs(request, self.check_language(request.language), collect=True):
                if isinstance(item, Output):
                    if isinstance(item.text, bytes):
                        raw[item.stream].append(item.text)
                    else:
                        out[item.stream].append(item.text)
                else:
                    done = item
        except err.WorldError as exc:
            text = {k: "".join(out[k]) or b"".join(raw[k]).decode("utf-8", "replace") for k in out}
            partial = pb.ExecutionResult(instance_id=request.instance_id, stdout=_head(text["stdout"]),
                                         stderr=_head(text["stderr"]), error=exc.message[:512])
            exc.trailers = (("x-worldrt-partial-result-bin", partial.SerializeToString()),)
            raise
        if done is None:
            raise err.Aborted(f"instance {request.instance_id} ended the run without a result")
        result = self.result_of(done, call, request.instance_id)
        result.stdout, result.stderr = "".join(out["stdout"]), "".join(out["stderr"])
        result.stdout_bytes, result.stderr_bytes = b"".join(raw["stdout"]), b"".join(raw["stderr"])
        return result

    # files -----------------------------------------------------------------------------------------
    async def write_files(self, request: pb.WriteFilesRequest, call: Call) -> pb.WriteFilesReply:
        if not request.files:
            raise err.InvalidArgument("files is empty: give at least one path and its bytes")
        files = [NewFile(f.path, f.data, f.mode & 0o777) for f in request.files]
        count, size = await self.engine.write_files(request.instance_id, files)
        return pb.WriteFilesReply(files=count, bytes=size)

    async def list_files(self, request: pb.ListFilesRequest, call: Call) -> pb.ListFilesReply:
        folder, entries, truncated = await self.engine.list_files(request.instance_id, request.path)
        reply = pb.ListFilesReply(path=folder, truncated=truncated)
        for e in entries:
            reply.entries.append(file_info(e))
        return reply

    async def stat_file(self, request: pb.StatFileRequest, call: Call) -> pb.FileInfo:
        return file_info(await self.engine.stat_file(request.instance_id, request.path))

    async def make_directory(self, request: pb.MakeDirectoryRequest, call: Call) -> pb.MakeDirectoryReply:
        entry, created = await self.engine.make_directory(request.instance_id, request.path, request.parents,
                                                          request.mode)
        return pb.MakeDirectoryReply(entry=file_info(entry), created=created)

    async def move_file(self, request: pb.MoveFileRequest, call: Call) -> pb.FileInfo:
        return file_info(await self.engine.move_file(request.instance_id, request.source, request.destination,
                                                     request.overwrite))

    async def watch_files(self, request: pb.WatchFilesRequest, call: Call) -> AsyncIterator[pb.FileWatchEvent]:
        async for change in self.engine.watch_files(request.instance_id, request.path, request.recursive,
                                                    request.timeout_s, self.watch_limits):
            yield pb.FileWatchEvent(kind=_EVENT_KINDS[change.kind], path=change.path, old_path=change.old_path,
                                    is_dir=change.is_dir, dropped=change.dropped, message=change.message)

    async def remove_file(self, request: pb.RemoveFileRequest, call: Call) -> pb.RemoveFileReply:
        kind, removed = await self.engine.remove_file(request.instance_id, request.path, request.recursive)
        return pb.RemoveFileReply(kind=kind, removed=removed)

    async def read_file(self, request: pb.ReadFileRequest, call: Call) -> AsyncIterator[pb.FileChunk]:
        opened: Opened | None = None
        position = request.offset
        async for item in self.engine.read_file(request.instance_id, request.path, request.offset, request.length):
            if isinstance(item, Opened):
                opened = item
                continue
            assert opened is not None
            position += len(item)
            yield pb.FileChunk(data=item, offset=position - len(item), size=opened.size, mode=opened.mode,
                               eof=False)
        assert opened is not None
        yield pb.FileChunk(offset=position, size=opened.size, mode=opened.mode, eof=True)

    async def read_file_chunk(self, request: pb.ReadFileRequest, call: Call) -> pb.FileChunk:
        parts: list[bytes] = []
        opened: Opened | None = None
        async for item in self.engine.read_file(request.instance_id, request.path, request.offset, request.length,
                                                cap=MAX_CHUNK_READ):
            if isinstance(item, Opened):
                opened = item
            else:
                parts.append(item)
        assert opened is not None
        data = b"".join(parts)
        return pb.FileChunk(data=data, offset=request.offset, size=opened.size, mode=opened.mode, eof=True)

    # processes -------------------------------------------------------------------------------------
    def process_pb(self, iid: str, proc: Process) -> pb.ProcessInfo:
        states = {"running": pb.PROCESS_RUNNING, "exited": pb.PROCESS_EXITED, "killed": pb.PROCESS_KILLED,
                  "timed_out": pb.PROCESS_TIMED_OUT}
        out, err_ = proc.output.stdout, proc.output.stderr
        info = pb.ProcessInfo(
            process_id=proc.id, instance_id=iid, argv=proc.argv, tag=proc.tag, pid=proc.pid,
            state=states[proc.state], exit_code=proc.exit_code, signal=proc.signal,
            started_at=timestamp(proc.started_at), stdout_size=out.total, stderr_size=err_.total,
            stdout_first_offset=out.first, stderr_first_offset=err_.first,
            stdin_open=proc.stdin is not None and not proc.stdin.closed, cwd=proc.cwd, reason=proc.reason,
            output_ended=proc.output.ended)
        if proc.ended_at:
            info.ended_at.CopyFrom(timestamp(proc.ended_at))
        return info

    async def start_process(self, request: pb.StartProcessRequest, call: Call) -> pb.ProcessInfo:
        table = self.engine.processes(request.instance_id)
        proc = await table.start(list(request.argv), dict(request.env), request.cwd, request.stdin,
                                 request.timeout_ms, request.tag, request.process_id)
        return self.process_pb(request.instance_id, proc)

    async def read_process_output(self, request: pb.ReadProcessOutputRequest,
                                  call: Call) -> AsyncIterator[pb.ProcessOutputChunk]:
        table = self.engine.processes(request.instance_id)
        streams = {pb.PROCESS_STREAM_BOTH: ["stdout", "stderr"], pb.PROCESS_STDOUT: ["stdout"],
                   pb.PROCESS_STDERR: ["stderr"]}.get(request.stream)
        if streams is None:
            raise err.InvalidArgument(f"stream must be PROCESS_STREAM_BOTH, PROCESS_STDOUT or PROCESS_STDERR, got "
                                      f"{request.stream}")
        if request.stdout_offset < 0 or request.stderr_offset < 0:
            raise err.InvalidArgument("offsets must not be negative")
        kinds = {"stdout": pb.PROCESS_STDOUT, "stderr": pb.PROCESS_STDERR}
        async for name, offset, data, eof in table.read(
                request.process_id, streams, {"stdout": request.stdout_offset, "stderr": request.stderr_offset},
                request.no_wait):
            yield pb.ProcessOutputChunk(stream=kinds[name], offset=offset, data=data, eof=eof)

    async def write_process_stdin(self, request: pb.WriteProcessStdinRequest,
                                  call: Call) -> pb.WriteProcessStdinReply:
        stdin = self.engine.processes(request.instance_id).write_stdin(request.process_id, request.offset,
                                                                       request.data, request.eof)
        return pb.WriteProcessStdinReply(offset=stdin.accepted, pending=len(stdin.pending), closed=stdin.closed)

    async def wait_process(self, request: pb.WaitProcessRequest, call: Call) -> pb.ProcessInfo:
        proc = await self.engine.processes(request.instance_id).wait(request.process_id, request.timeout_ms)
        return self.process_pb(request.instance_id, proc)

    async def signal_process(self, request: pb.SignalProcessRequest, call: Call) -> pb.ProcessInfo:
        proc = await self.engine.processes(request.instance_id).signal(request.process_id, request.signal,
                                                                       request.leader_only)
        return self.process_pb(request.instance_id, proc)

    async def list_processes(self, request: pb.ListProcessesRequest, call: Call) -> pb.ListProcessesReply:
        table = self.engine.processes(request.instance_id)
        return pb.ListProcessesReply(processes=[self.process_pb(request.instance_id, p) for p in table.all()])

    # images ----------------------------------------------------------------------------------------
    def image_in_use(self) -> set[str]:
        return self.engine.images_in_use()

    async def build_image(self, request: pb.BuildImageRequest, call: Call) -> AsyncIterator[pb.BuildImageEvent]:
        """The build's progress, then the image (a span and ``worldrt_image_builds_total`` with telemetry on)."""
        started, outcome = time.perf_counter(), "failed"
        try:
            with telemetry.span("sandbox.image_build", {"worldrt.provider": self.provider_id, "worldrt.image": request.name}):
                async for event in self._build_image(request, call):
                    if event.HasField("image"):
                        outcome = "cached" if event.image.cached else "built"
                    yield event
        finally:
            telemetry.inc("worldrt_image_builds_total", self.provider_id, outcome)
            if outcome == "built":
                telemetry.observe("worldrt_image_build_duration_seconds", time.perf_counter() - started, self.provider_id)

    async def _build_image(self, request: pb.BuildImageRequest, call: Call) -> AsyncIterator[pb.BuildImageEvent]:
        if not request.name:
            raise err.InvalidArgument("name is required: the image is started by it (StartRequest.image)")
        if request.max_size_mb < 0:
            raise err.InvalidArgument("max_size_mb must not be negative")
        requirements = _builder.requirement_lines(list(request.pip), request.requirements)
        files = tuple(NewFile(f.path, f.data, f.mode & 0o777) for f in request.files)
        max_mb = request.max_size_mb or int(self.options.values.get("image_max_mb", _builder.DEFAULT_MAX_MB))
        _builder.check_files(list(files), max_mb * MIB)
        spec = _builder.BuildSpec(request.name, requirements, files, request.index_url,
                                  request.timeout_s or int(self.options.values.get("image_timeout_s",
                                                                                   _builder.DEFAULT_TIMEOUT_S)),
                                  max_mb * MIB, image_owner(call), request.replace)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[pb.BuildImageEvent] = asyncio.Queue()

        def progress(stage: str, message: str, fraction: float) -> None:
            loop.call_soon_threadsafe(events.put_nowait, pb.BuildImageEvent(
                progress=pb.BuildProgress(stage=stage, message=message, fraction=fraction)))

        cached = self.images.cached(spec.key()) is not None
        async with self._building:
            building = asyncio.ensure_future(asyncio.to_thread(_builder.build, self.images, spec, progress))
            while not building.done() or not events.empty():
                getting = asyncio.ensure_future(events.get())
                await asyncio.wait({building, getting}, return_when=asyncio.FIRST_COMPLETED)
                if getting.done():
                    yield getting.result()
                else:
                    getting.cancel()
            info = building.result()
        self.engine.prewarm(info)
        yield pb.BuildImageEvent(image=image_pb(info, cached))

    async def list_images(self, request: pb.ListImagesRequest, call: Call) -> pb.ListImagesReply:
        return pb.ListImagesReply(images=[image_pb(i) for i in await asyncio.to_thread(self.images.all)])

    async def inspect_image(self, request: pb.ImageRef, call: Call) -> pb.Image:
        return image_pb(self.images.resolve(request.image))

    async def delete_image(self, request: pb.ImageRef, call: Call) -> pb.Image:
        gone = await asyncio.to_thread(self.images.remove, request.image, self.image_in_use(), image_owner(call))
        if not gone.names:
            await self.engine.drop_image_pool(gone.digest)
        return image_pb(gone)
