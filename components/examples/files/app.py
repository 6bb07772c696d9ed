"""A verse that manages an instance's files with worldrt:verse@0.2.0: make-directory, write-files,
stat-file, move-file, read-file by offset, watch-files (a bounded watch while a process it started makes
files) and remove-file.

``run(verse_id, args)`` with args JSON ``{"instance_id": ID, "dir": "box"}`` returns JSON of what each
step saw; a provider's error that the step does not expect is its err, as "CODE: message".
``{"op": "put", "instance_id": ID, "path": P, "text": T}`` only writes ``T`` at ``P`` (mode 0640), reads it
back and lists the workspace's top.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import generator
from wit_world.imports.types import (
    FileEntry,
    ListFilesRequest,
    MakeDirectoryRequest,
    MoveFileRequest,
    ReadFileRequest,
    RemoveFileRequest,
    SignalProcessRequest,
    StartProcessRequest,
    StatFileRequest,
    WaitProcessRequest,
    WatchFilesRequest,
    WriteFilesRequest,
)


def _call(fn, request):
    try:
        return fn(request)
    except Err as exc:
        raise Err(f"{exc.value.code}: {exc.value.message}") from None


def _code(fn, request) -> str:
    """The error code of a call expected to fail ("ok" when it did not)."""
    try:
        fn(request)
    except Err as exc:
        return exc.value.code
    return "ok"


def _kind(event) -> str:
    return event.kind.name.lower()


def _put(iid: str, path: str, text: str) -> str:
    wrote = _call(generator.write_files, WriteFilesRequest(instance_id=iid, files=[
        FileEntry(path=path, data=text.encode(), mode=0o640)]))
    chunk = _call(generator.read_file, ReadFileRequest(instance_id=iid, path=path, offset=0, length=0))
    listing = _call(generator.list_files, ListFilesRequest(instance_id=iid, path=""))
    return json.dumps({"wrote": wrote.bytes, "read": bytes(chunk.data).decode(), "mode": chunk.mode,
                       "names": [e.name for e in listing.entries]})


class WitWorld(wit_world.WitWorld):
    def run(self, verse_id: int, args: str) -> str:
        spec = json.loads(args or "{}")
        if spec.get("op") == "put":
            return _put(spec["instance_id"], spec["path"], spec["text"])
        iid, top = spec["instance_id"], spec.get("dir", "box")
        seen = {}
        made = _call(generator.make_directory, MakeDirectoryRequest(instance_id=iid, path=f"{top}/inner",
                                                                    parents=True, mode=0o750))
        again = _call(generator.make_directory, MakeDirectoryRequest(instance_id=iid, path=f"{top}/inner",
                                                                     parents=True, mode=0))
        seen["mkdir"] = [made.created, made.entry.kind, made.entry.mode & 0o777, again.created]
        seen["mkdir_exists"] = _code(generator.make_directory, MakeDirectoryRequest(
            instance_id=iid, path=f"{top}/inner", parents=False, mode=0))

        _call(generator.write_files, WriteFilesRequest(instance_id=iid, files=[
            FileEntry(path=f"{top}/inner/a.txt", data=b"hello files", mode=0)]))
        info = _call(generator.stat_file, StatFileRequest(instance_id=iid, path=f"{top}/inner/a.txt"))
        seen["stat"] = [info.name, info.path, info.kind, info.size]

        moved = _call(generator.move_file, MoveFileRequest(instance_id=iid, source=f"{top}/inner/a.txt",
                                                           destination=f"{top}/b.txt", overwrite=False))
        seen["move"] = [moved.path, moved.size]
        seen["stat_moved_away"] = _code(generator.stat_file, StatFileRequest(instance_id=iid,
                                                                             path=f"{top}/inner/a.txt"))
        part = _call(generator.read_file, ReadFileRequest(instance_id=iid, path=f"{top}/b.txt", offset=6, length=3))
        seen["read"] = [bytes(part.data).decode(), part.offset, part.size]

        # A watch sees what others do meanwhile: a process touches a new file every 50 ms.
        maker = _call(generator.start_process, StartProcessRequest(
            instance_id=iid, argv=["sh", "-c", f"i=0; while [ $i -lt 400 ]; do i=$((i+1)); "
                                               f": > {top}/inner/f$i; sleep 0.05; done"],
            env=[], cwd="", stdin=False, timeout_ms=60_000, tag="maker", process_id=""))
        watched = _call(generator.watch_files, WatchFilesRequest(instance_id=iid, path=f"{top}/inner",
                                                                 recursive=False, timeout_s=20, max_events=3))
        _call(generator.signal_process, SignalProcessRequest(instance_id=iid, process_id=maker.process_id,
                                                             signal=9, leader_only=False))
        _call(generator.wait_process, WaitProcessRequest(instance_id=iid, process_id=maker.process_id,
                                                         timeout_ms=10_000))
        seen["watch"] = {"events": [[_kind(e), e.path] for e in watched.events], "ended": watched.ended}
        idle = _call(generator.watch_files, WatchFilesRequest(instance_id=iid, path=top, recursive=False,
                                                              timeout_s=1, max_events=0))
        seen["idle_watch"] = {"events": [_kind(e) for e in idle.events], "ended": idle.ended}

        seen["rmdir_not_empty"] = _code(generator.remove_file, RemoveFileRequest(instance_id=iid, path=top,
                                                                                 recursive=False))
        removed = _call(generator.remove_file, RemoveFileRequest(instance_id=iid, path=top, recursive=True))
        seen["remove"] = [removed.kind, removed.removed > 3]
        seen["stat_removed"] = _code(generator.stat_file, StatFileRequest(instance_id=iid, path=top))
        seen["escape"] = _code(generator.remove_file, RemoveFileRequest(instance_id=iid, path="../etc",
                                                                        recursive=True))
        return json.dumps(seen)
