"""Handles of instances and snapshots, and an instance's files, for ``Client`` (blocking calls).

Invariants: every call goes through the client's host by the Host API (CallProvider and its stream for
instances, the file RPCs for files), so links, registry rows and a lattice apply to it; a failed call
raises the ``worldrt.errors`` kind of its status; leaving ``with client.start(...) as inst`` stops the
instance, and an instance already gone by then (merged away, expired, stopped elsewhere) is not an error
there.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from worldrt.client import _requests as requests
from worldrt.client._handles import InstanceHandle, SnapshotHandle
from worldrt.client._processes import Process, processes_of
from worldrt.client._streams import Last, iterate
from worldrt.client._types import (
    ExecResult,
    FileEvent,
    FileInfo,
    InstanceInfo,
    Limits,
    Output,
    ProcessStatus,
    SnapshotInfo,
    branch_failure,
)
from worldrt.errors import FailedPrecondition, NotFound
from worldrt.v1 import host_pb, pb

if TYPE_CHECKING:
    from types import TracebackType

    from worldrt.client._client import Client


def output_of(event: host_pb.InvokeEvent) -> Output | None:
    """The text an ExecuteStream event carries (None for other events)."""
    kind = event.execution.WhichOneof("event") if event.HasField("execution") else None
    if kind == "stdout":
        return Output("stdout", event.execution.stdout)
    if kind == "stderr":
        return Output("stderr", event.execution.stderr)
    return None


class Files:
    """The files of an instance's workspace (/workspace): paths are relative to it; ``..``, paths outside it
    and links leading out are refused (InvalidArgument), sizes past the instance's limits are
    ResourceExhausted."""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance

    def write(self, path: str, data: bytes | str, *, mode: int | None = None) -> int:
        """Write one file (text as UTF-8), making its folders; the bytes written."""
        return self.write_many({path: data}, mode=mode)

    def write_many(self, files: Mapping[str, bytes | str], *, mode: int | None = None) -> int:
        """Write several files in one call; the bytes written."""
        inst = self._instance
        reply = inst._client._host(inst._client._api.write_files, host_pb.HostWriteFilesRequest(
            provider=inst.provider, files=pb.WriteFilesRequest(instance_id=inst.id,
                                                               files=requests.file_entries(files, mode))))
        return int(reply.bytes)

    def read(self, path: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """A file's bytes (from ``offset``, at most ``length`` of them when given)."""
        inst = self._instance
        chunks: list[bytes] = []
        last = inst._client._host(inst._client._api.read_file, host_pb.HostReadFileRequest(
            provider=inst.provider, read=pb.ReadFileRequest(instance_id=inst.id, path=path, offset=offset,
                                                           length=length or 0)),
            lambda chunk: chunks.append(chunk.data))
        chunks.append(last.data)
        return b"".join(chunks)

    def read_text(self, path: str, *, encoding: str = "utf-8") -> str:
        """A file's text."""
        return self.read(path).decode(encoding)

    def list(self, path: str = "") -> builtins.list[FileInfo]:
        """The entries of a folder of the workspace (its top when ``path`` is empty)."""
        inst = self._instance
        reply = inst._client._host(inst._client._api.list_files, host_pb.HostListFilesRequest(
            provider=inst.provider, list=pb.ListFilesRequest(instance_id=inst.id, path=path)))
        return [FileInfo.of(entry) for entry in reply.entries]

    def stat(self, path: str = "") -> FileInfo:
        """One entry (a symlink itself, not what it leads to); NotFound when it is missing."""
        inst = self._instance
        return FileInfo.of(inst._client._host(inst._client._api.stat_file, host_pb.HostStatFileRequest(
            provider=inst.provider, stat=pb.StatFileRequest(instance_id=inst.id, path=path))))

    def mkdir(self, path: str, *, parents: bool = False, mode: int | None = None) -> bool:
        """Make a folder (with ``parents``, its missing parents too, and no error when it is there); True
        when it was made. AlreadyExists when it is there and ``parents`` is False."""
        inst = self._instance
        reply = inst._client._host(inst._client._api.make_directory, host_pb.HostMakeDirectoryRequest(
            provider=inst.provider, mkdir=pb.MakeDirectoryRequest(instance_id=inst.id, path=path, parents=parents,
                                                                  mode=mode or 0)))
        return bool(reply.created)

    def move(self, source: str, destination: str, *, overwrite: bool = False) -> FileInfo:
        """Rename a file or folder within the workspace; the entry at its new path. AlreadyExists when the
        destination is there and ``overwrite`` is False."""
        inst = self._instance
        return FileInfo.of(inst._client._host(inst._client._api.move_file, host_pb.HostMoveFileRequest(
            provider=inst.provider, move=pb.MoveFileRequest(instance_id=inst.id, source=source,
                                                            destination=destination, overwrite=overwrite))))

    def remove(self, path: str, *, recursive: bool = False) -> int:
        """Remove a file, a symlink or an empty folder (a folder and its contents with ``recursive``); how
        many entries were removed. NotFound when it is missing."""
        inst = self._instance
        reply = inst._client._host(inst._client._api.remove_file, host_pb.HostRemoveFileRequest(
            provider=inst.provider, remove=pb.RemoveFileRequest(instance_id=inst.id, path=path, recursive=recursive)))
        return int(reply.removed)

    def watch(self, path: str = "", *, recursive: bool = False, timeout_s: int | None = None) -> Iterator[FileEvent]:
        """Changes under a folder as they happen, first a "ready" event (the watch is in place); the
        iterator ends when the folder goes, ``timeout_s`` passes (the provider's maximum when None) or the
        instance ends. Leaving the loop ends the watch at its next event."""
        inst = self._instance
        client = inst._client
        request = host_pb.HostWatchFilesRequest(provider=inst.provider, watch=pb.WatchFilesRequest(
            instance_id=inst.id, path=path, recursive=recursive, timeout_s=timeout_s or 0))
        for item in iterate(functools.partial(client._host, client._api.watch_files, request), stop_when_left=True):
            if not isinstance(item, Last):
                yield FileEvent.of(item)


class Instance(InstanceHandle):
    """A running instance of a sandbox provider: run code in it (``exec``, ``exec_stream``), move files
    (``files``), snapshot and branch it, stop it. ``with client.start(...) as inst:`` stops it on exit."""

    def __init__(self, client: Client, info: InstanceInfo) -> None:
        super().__init__(info)
        self._client = client
        self.files = Files(self)

    def exec(self, code: str = "", *, language: str = "python", argv: Sequence[str] | None = None,
             env: Mapping[str, str] | None = None, timeout_s: float | None = None) -> ExecResult:
        """Run ``code`` (or the command ``argv``) in the instance and wait for its result. Python keeps its
        state between runs; ``.value`` is the code's final expression. A timeout is DeadlineExceeded."""
        request = requests.execute(self.id, code, language=language, argv=argv, env=env, timeout_s=timeout_s)
        return ExecResult.of(self._client._call(self.provider, "execute", request).execution)

    def exec_stream(self, code: str = "", *, language: str = "python", argv: Sequence[str] | None = None,
                    env: Mapping[str, str] | None = None, timeout_s: float | None = None,
                    ) -> Iterator[Output | ExecResult]:
        """Run like ``exec``, yielding each ``Output`` as the run writes it and then the ``ExecResult``."""
        request = requests.execute(self.id, code, language=language, argv=argv, env=env, timeout_s=timeout_s)
        call = requests.provider_call(self.provider, "execute", request)
        client = self._client
        client._source(self.provider)
        for item in iterate(lambda sink: client._host(client._api.call_provider_stream, call, sink)):
            if isinstance(item, Last):
                yield ExecResult.of(item.result)
            elif (output := output_of(item)) is not None:
                yield output

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
              stdin: bool = False, timeout_s: float | None = None, tag: str = "") -> Process:
        """Start ``argv`` as a long-lived process in the instance (its files, limits and uid) and return at
        once; it outlives this call and ends with the instance. ``env`` adds to the instance's environment,
        ``cwd`` is under /workspace, ``stdin`` pipes its stdin (else /dev/null), ``timeout_s`` kills it (and
        its process group) after that long, ``tag`` is a label of yours, shown in listings."""
        request = requests.spawn(self.id, argv, env=env, cwd=cwd, stdin=stdin, timeout_s=timeout_s, tag=tag)
        status = ProcessStatus.of((self._client._call(self.provider, "start_process", request)).process)
        return Process(self, status.id, status, 0 if stdin else None)

    def process(self, process_id: str) -> Process:
        """A handle of a process of this instance that exists already (by its id); nothing is asked."""
        return Process(self, process_id)

    def processes(self) -> builtins.list[Process]:
        """Its processes: the running ones and the most recent ended ones, oldest first."""
        reply = self._client._call(self.provider, "list_processes", pb.ListProcessesRequest(instance_id=self.id))
        return [Process(self, status.id, status) for status in processes_of(reply)]

    def snapshot(self, *, ttl_s: int | None = None) -> Snapshot:
        """Freeze a copy of the instance (memory and disk on morph, disk on modal); it keeps running."""
        reply = self._client._call(self.provider, "snapshot", pb.SnapshotRequest(instance_id=self.id, ttl_s=ttl_s or 0))
        return Snapshot(self._client, SnapshotInfo.of(reply.snapshot, self.provider))

    def branch(self, n: int, *, ttl_s: int | None = None) -> builtins.list[Instance]:
        """``n`` new instances from a snapshot of this one taken now (Morph's ``instance.branch``)."""
        return self.snapshot().branch(n, ttl_s=ttl_s)

    def stop(self) -> None:
        """Stop the instance and everything it runs; a second call does nothing. NotFound if the provider
        holds no such instance."""
        if not self._stopped:
            self._client._call(self.provider, "stop", pb.InstanceRef(instance_id=self.id))
            self._stopped = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop()
        except (NotFound, FailedPrecondition):  # gone already: merged away, expired or stopped elsewhere
            self._stopped = True


class Snapshot(SnapshotHandle):
    """A snapshot: branch it into live instances, start one instance from it, or delete it."""

    def __init__(self, client: Client, info: SnapshotInfo) -> None:
        super().__init__(info)
        self._client = client

    def branch(self, n: int, *, ttl_s: int | None = None) -> builtins.list[Instance]:
        """``n`` live instances, each a copy of the snapshot (reseeded). If any cannot be made, the ones
        made are stopped and the first failure's kind is raised, naming every failure."""
        reply = self._client._call(self.provider, "branch", pb.BranchRequest(snapshot_id=self.id, count=n,
                                                                             ttl_s=ttl_s or 0)).branch
        made = [Instance(self._client, InstanceInfo.of(i, self.provider)) for i in reply.instances]
        failure = branch_failure(reply, n)
        if failure is not None:
            for inst in made:
                inst.__exit__(None, None, None)
            raise failure
        return made

    def start(self, *, limits: Limits | None = None, ttl_s: int | None = None,
              metadata: Mapping[str, str] | None = None) -> Instance:
        """One new instance from the snapshot."""
        request = requests.start(image=None, limits=limits, ttl_s=ttl_s, metadata=metadata, snapshot_id=self.id)
        reply = self._client._call(self.provider, "start", request)
        return Instance(self._client, InstanceInfo.of(reply.instance, self.provider))

    def delete(self) -> None:
        """Release the snapshot (its branches live on)."""
        self._client._call(self.provider, "stop", pb.InstanceRef(instance_id=self.id))


def instances_of(client: Client, reply: Any, provider: str) -> builtins.list[Instance]:
    """Handles of the instances a ListInstances reply names."""
    return [Instance(client, InstanceInfo.of(i, provider)) for i in reply.instances]
