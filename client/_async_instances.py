"""Handles of instances and snapshots, and an instance's files, for ``AsyncClient``: ``Instance``,
``Snapshot`` and ``Files`` with ``await``.

Invariants: the same requests as the blocking handles (``_requests``), the same decoding and the same
errors; calls on different instances overlap when gathered (``asyncio.gather(*(b.exec(...) for b in
branches))``); leaving ``async with`` stops the instance, one already gone is not an error there.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from worldrt.client import _requests as requests
from worldrt.client._handles import InstanceHandle, SnapshotHandle
from worldrt.client._instances import output_of
from worldrt.client._processes import AsyncProcess, processes_of
from worldrt.client._streams import Last, aiterate
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

    from worldrt.client._async_client import AsyncClient


class AsyncFiles:
    """``Files`` with ``await``: the files of an instance's workspace."""

    def __init__(self, instance: AsyncInstance) -> None:
        self._instance = instance

    async def write(self, path: str, data: bytes | str, *, mode: int | None = None) -> int:
        """Write one file (text as UTF-8), making its folders; the bytes written."""
        return await self.write_many({path: data}, mode=mode)

    async def write_many(self, files: Mapping[str, bytes | str], *, mode: int | None = None) -> int:
        """Write several files in one call; the bytes written."""
        inst = self._instance
        reply = await inst._client._aio.unary("write_files", host_pb.HostWriteFilesRequest(
            provider=inst.provider, files=pb.WriteFilesRequest(instance_id=inst.id,
                                                               files=requests.file_entries(files, mode))))
        return int(reply.bytes)

    async def read(self, path: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """A file's bytes (from ``offset``, at most ``length`` of them when given)."""
        inst = self._instance
        chunks: list[bytes] = []
        last = await inst._client._aio.streamed("read_file", host_pb.HostReadFileRequest(
            provider=inst.provider, read=pb.ReadFileRequest(instance_id=inst.id, path=path, offset=offset,
                                                           length=length or 0)),
            lambda chunk: chunks.append(chunk.data))
        chunks.append(last.data)
        return b"".join(chunks)

    async def read_text(self, path: str, *, encoding: str = "utf-8") -> str:
        """A file's text."""
        return (await self.read(path)).decode(encoding)

    async def list(self, path: str = "") -> builtins.list[FileInfo]:
        """The entries of a folder of the workspace (its top when ``path`` is empty)."""
        inst = self._instance
        reply = await inst._client._aio.unary("list_files", host_pb.HostListFilesRequest(
            provider=inst.provider, list=pb.ListFilesRequest(instance_id=inst.id, path=path)))
        return [FileInfo.of(entry) for entry in reply.entries]

    async def stat(self, path: str = "") -> FileInfo:
        """One entry (a symlink itself, not what it leads to); NotFound when it is missing."""
        inst = self._instance
        return FileInfo.of(await inst._client._aio.unary("stat_file", host_pb.HostStatFileRequest(
            provider=inst.provider, stat=pb.StatFileRequest(instance_id=inst.id, path=path))))

    async def mkdir(self, path: str, *, parents: bool = False, mode: int | None = None) -> bool:
        """Make a folder (see ``Files.mkdir``); True when it was made."""
        inst = self._instance
        reply = await inst._client._aio.unary("make_directory", host_pb.HostMakeDirectoryRequest(
            provider=inst.provider, mkdir=pb.MakeDirectoryRequest(instance_id=inst.id, path=path, parents=parents,
                                                                  mode=mode or 0)))
        return bool(reply.created)

    async def move(self, source: str, destination: str, *, overwrite: bool = False) -> FileInfo:
        """Rename a file or folder within the workspace; the entry at its new path."""
        inst = self._instance
        return FileInfo.of(await inst._client._aio.unary("move_file", host_pb.HostMoveFileRequest(
            provider=inst.provider, move=pb.MoveFileRequest(instance_id=inst.id, source=source,
                                                            destination=destination, overwrite=overwrite))))

    async def remove(self, path: str, *, recursive: bool = False) -> int:
        """Remove a file, a symlink or an empty folder (with ``recursive``, a folder and its contents)."""
        inst = self._instance
        reply = await inst._client._aio.unary("remove_file", host_pb.HostRemoveFileRequest(
            provider=inst.provider, remove=pb.RemoveFileRequest(instance_id=inst.id, path=path, recursive=recursive)))
        return int(reply.removed)

    async def watch(self, path: str = "", *, recursive: bool = False,
                    timeout_s: int | None = None) -> AsyncIterator[FileEvent]:
        """Changes under a folder as they happen (see ``Files.watch``); leaving the loop cancels the watch."""
        inst = self._instance
        request = host_pb.HostWatchFilesRequest(provider=inst.provider, watch=pb.WatchFilesRequest(
            instance_id=inst.id, path=path, recursive=recursive, timeout_s=timeout_s or 0))
        async for item in aiterate(functools.partial(inst._client._aio.streamed, "watch_files", request)):
            if not isinstance(item, Last):
                yield FileEvent.of(item)


class AsyncInstance(InstanceHandle):
    """``Instance`` with ``await``: ``async with await client.start(...) as inst:`` stops it on exit."""

    def __init__(self, client: AsyncClient, info: InstanceInfo) -> None:
        super().__init__(info)
        self._client = client
        self.files = AsyncFiles(self)

    async def exec(self, code: str = "", *, language: str = "python", argv: Sequence[str] | None = None,
                   env: Mapping[str, str] | None = None, timeout_s: float | None = None) -> ExecResult:
        """Run ``code`` (or the command ``argv``) in the instance; its result. A timeout is DeadlineExceeded."""
        request = requests.execute(self.id, code, language=language, argv=argv, env=env, timeout_s=timeout_s)
        return ExecResult.of((await self._client._call(self.provider, "execute", request)).execution)

    async def exec_stream(self, code: str = "", *, language: str = "python", argv: Sequence[str] | None = None,
                          env: Mapping[str, str] | None = None, timeout_s: float | None = None,
                          ) -> AsyncIterator[Output | ExecResult]:
        """Run like ``exec``, yielding each ``Output`` as the run writes it and then the ``ExecResult``."""
        request = requests.execute(self.id, code, language=language, argv=argv, env=env, timeout_s=timeout_s)
        await self._client._source(self.provider)
        call = requests.provider_call(self.provider, "execute", request)
        aio = self._client._aio
        async for item in aiterate(lambda sink: aio.streamed("call_provider_stream", call, sink)):
            if isinstance(item, Last):
                yield ExecResult.of(item.result)
            elif (output := output_of(item)) is not None:
                yield output

    async def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
              stdin: bool = False, timeout_s: float | None = None, tag: str = "") -> AsyncProcess:
        """Start ``argv`` as a long-lived process in the instance (its files, limits and uid) and return at
        once; it outlives this call and ends with the instance. ``env`` adds to the instance's environment,
        ``cwd`` is under /workspace, ``stdin`` pipes its stdin (else /dev/null), ``timeout_s`` kills it (and
        its process group) after that long, ``tag`` is a label of yours, shown in listings."""
        request = requests.spawn(self.id, argv, env=env, cwd=cwd, stdin=stdin, timeout_s=timeout_s, tag=tag)
        status = ProcessStatus.of((await self._client._call(self.provider, "start_process", request)).process)
        return AsyncProcess(self, status.id, status, 0 if stdin else None)

    def process(self, process_id: str) -> AsyncProcess:
        """A handle of a process of this instance that exists already (by its id); nothing is asked."""
        return AsyncProcess(self, process_id)

    async def processes(self) -> builtins.list[AsyncProcess]:
        """Its processes: the running ones and the most recent ended ones, oldest first."""
        reply = await self._client._call(self.provider, "list_processes", pb.ListProcessesRequest(instance_id=self.id))
        return [AsyncProcess(self, status.id, status) for status in processes_of(reply)]

    async def snapshot(self, *, ttl_s: int | None = None) -> AsyncSnapshot:
        """Freeze a copy of the instance (memory and disk on morph, disk on modal); it keeps running."""
        reply = await self._client._call(self.provider, "snapshot",
                                         pb.SnapshotRequest(instance_id=self.id, ttl_s=ttl_s or 0))
        return AsyncSnapshot(self._client, SnapshotInfo.of(reply.snapshot, self.provider))

    async def branch(self, n: int, *, ttl_s: int | None = None) -> builtins.list[AsyncInstance]:
        """``n`` new instances from a snapshot of this one taken now."""
        return await (await self.snapshot()).branch(n, ttl_s=ttl_s)

    async def stop(self) -> None:
        """Stop the instance and everything it runs; a second call does nothing."""
        if not self._stopped:
            await self._client._call(self.provider, "stop", pb.InstanceRef(instance_id=self.id))
            self._stopped = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.stop()
        except (NotFound, FailedPrecondition):  # gone already: merged away, expired or stopped elsewhere
            self._stopped = True


class AsyncSnapshot(SnapshotHandle):
    """``Snapshot`` with ``await``."""

    def __init__(self, client: AsyncClient, info: SnapshotInfo) -> None:
        super().__init__(info)
        self._client = client

    async def branch(self, n: int, *, ttl_s: int | None = None) -> builtins.list[AsyncInstance]:
        """``n`` live instances, each a copy of the snapshot. If any cannot be made, the ones made are
        stopped and the first failure's kind is raised."""
        reply = (await self._client._call(self.provider, "branch",
                                          pb.BranchRequest(snapshot_id=self.id, count=n, ttl_s=ttl_s or 0))).branch
        made = [AsyncInstance(self._client, InstanceInfo.of(i, self.provider)) for i in reply.instances]
        failure = branch_failure(reply, n)
        if failure is not None:
            for inst in made:
                await inst.__aexit__(None, None, None)
            raise failure
        return made

    async def start(self, *, limits: Limits | None = None, ttl_s: int | None = None,
                    metadata: Mapping[str, str] | None = None) -> AsyncInstance:
        """One new instance from the snapshot."""
        request = requests.start(image=None, limits=limits, ttl_s=ttl_s, metadata=metadata, snapshot_id=self.id)
        reply = await self._client._call(self.provider, "start", request)
        return AsyncInstance(self._client, InstanceInfo.of(reply.instance, self.provider))

    async def delete(self) -> None:
        """Release the snapshot (its branches live on)."""
        await self._client._call(self.provider, "stop", pb.InstanceRef(instance_id=self.id))


def async_instances_of(client: AsyncClient, reply: Any, provider: str) -> builtins.list[AsyncInstance]:
    """Handles of the instances a ListInstances reply names."""
    return [AsyncInstance(client, InstanceInfo.of(i, provider)) for i in reply.instances]
