"""``sb.filesystem.watch(path)`` over the host's WatchFiles: the SDK execs ``modal-sandbox-fs-tools
'{"Watch": ...}'`` and reads one JSON event per line from its stdout; this server runs no process for it but
a watch of its own (``FsWatch``), which answers the exec's router calls as that process would: stdout lines
``{"event_type", "paths"}``, stdin's end closing it, on failure a JSON ``{"error_kind", "message"}`` on
stderr and exit status 1, else 0.

Invariants:
- Paths in the workspace (``/workspace`` and under) are watched by the host's WatchFiles, which is
  confined to it. A file is watched through its folder, its own events kept; a symlink is refused
  (WatchFiles never follows one).
- Any other path (``/tmp``, say) is watched by a helper process this server runs in the sandbox
  (``_watchhelper``): its output lines are untrusted input, each checked, and a line that is not an event
  ends the watch (stderr JSON with the reason) and the helper; its stderr is read bounded. Stdin's end is
  passed on to it (it exits then), and it is killed when its watch ends otherwise.
- A watch runs in slices of at most ``SLICE_S`` on a thread of its own, admitted per sandbox: a watch whose
  reader went away (stdin closed, or its output not read) holds the provider's watcher at most until the
  slice ends or the next event, never for the SDK's whole ``timeout``. Between two slices changes may pass
  unseen: an ``Unknown`` event naming the watched path says so, as an overflow (events lost) does.
- Output is kept in a bounded window (``KEEP_BYTES``): a reader further behind starts at the oldest kept.
- A sandbox holds at most ``MAX_PER_SANDBOX`` watches of this server; past them, and past the provider's
  own per-instance cap, the watch fails with the reason.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from worldrt.errors import NotFound, WorldError
from worldrt.host.api import Admission
from worldrt.host.api.modal._records import SandboxRecord
from worldrt.host.api.modal._sandboxes import Sandboxes
from worldrt.host.api.modal._watchhelper import MAX_ERROR, MAX_LINE, BadLine, command_line, parse_error, parse_line
from worldrt.v1 import host_pb, pb

WORKSPACE = "/workspace"
PROVIDER = "modal"
SLICE_S = 60
KEEP_BYTES = 1024 * 1024
MAX_PER_SANDBOX = 4
# Watches remembered per server (ended ones are forgotten first, oldest first).
MAX_WATCHES = 1024

_KINDS = {pb.FILE_EVENT_CREATE: "Create", pb.FILE_EVENT_MODIFY: "Modify", pb.FILE_EVENT_REMOVE: "Remove",
          pb.FILE_EVENT_RENAME: "Rename", pb.FILE_EVENT_CHMOD: "Modify", pb.FILE_EVENT_OVERFLOW: "Unknown"}


def watch_command(argv: list[str], tool_path: str) -> dict[str, Any] | None:
    """The arguments of a fs-tools Watch command line, or None when ``argv`` is not one."""
    if len(argv) != 2 or argv[0] != tool_path:
        return None
    try:
        command = json.loads(argv[1])
    except ValueError:
        return None
    if not isinstance(command, dict) or set(command) != {"Watch"} or not isinstance(command["Watch"], dict):
        return None
    return command["Watch"]


class WatchFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def _in_workspace(path: object) -> str | None:
    """The path relative to the workspace ("" for itself), None when it is outside it; WatchFailed when it
    is not an absolute path."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise WatchFailed("Other", f"watch() needs an absolute path, got {path!r}")
    normal = posixpath.normpath(path)
    if normal != WORKSPACE and not normal.startswith(WORKSPACE + "/"):
        return None
    return normal[len(WORKSPACE) + 1:]


def _in_workspace_or_none(path: object) -> str | None:
    try:
        return _in_workspace(path)
    except WatchFailed:
        return ""  # refused by the thread, never served in the sandbox


def _absolute(relative: str) -> str:
    return WORKSPACE + ("/" + relative if relative and relative != "." else "")


class FsWatch:
    """One watch exec: its output by offset, its end, its exit code. Touched on the event loop only."""

    def __init__(self, record: SandboxRecord, exec_id: str, args: dict[str, Any]) -> None:
        self.record, self.exec_id, self.args = record, exec_id, args
        self.out = bytearray()
        self.out_start = 0  # the offset of out[0]
        self.err = b""
        self.code: int | None = None
        self.closed = False  # stdin ended or the sandbox ended: the next slice is not begun
        # Served by a helper process in the sandbox (its process id is the exec id), not by WatchFiles.
        self.in_sandbox = _in_workspace_or_none(args.get("path")) is None
        self.stdin_written = 0
        self.ended_at = 0.0
        self._changed = asyncio.Event()

    # fed by the watch thread (through the loop) ----------------------------------------------------
    def emit(self, event_type: str, paths: list[str]) -> None:
        line = json.dumps({"event_type": event_type, "paths": paths}, separators=(",", ":")).encode() + b"\n"
        self.out += line
        if len(self.out) > KEEP_BYTES:
            drop = len(self.out) - KEEP_BYTES
            del self.out[:drop]
            self.out_start += drop
        self._wake()

    def finish(self, code: int, kind: str = "", message: str = "") -> None:
        if self.code is not None:
            return
        if code:
            self.err = json.dumps({"error_kind": kind or "Other", "message": message}).encode()
        self.code = code
        self.ended_at = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # read by the router calls ---------------------------------------------------------------------
    async def stdout(self, offset: int) -> AsyncIterator[bytes]:
        while True:
            changed = self._changed
            offset = max(offset, self.out_start)
            end = self.out_start + len(self.out)
            if offset < end:
                data = bytes(self.out[offset - self.out_start:])
                offset = end
                yield data
                continue
            if self.code is not None:
                return
            await changed.wait()

    async def stderr(self, offset: int) -> AsyncIterator[bytes]:
        while self.code is None:
            await self._changed.wait()
        if offset < len(self.err):
            yield self.err[offset:]

    async def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while self.code is None and (left := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                break
        return self.code

    def close(self) -> None:
        """Its stdin ended (the SDK leaves the watch so): it ends now, its thread at its next event or slice."""
        self.closed = True
        self.finish(0)


class Watches:
    """The watches this server runs, by (sandbox, exec id)."""

    def __init__(self, sandboxes: Sandboxes, admission: Admission) -> None:
        self.sandboxes, self.host, self.admission = sandboxes, sandboxes.host, admission
        self._watches: dict[tuple[str, str], FsWatch] = {}
        self._starting: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    def get(self, record: SandboxRecord, exec_id: str) -> FsWatch | None:
        return self._watches.get((record.id, exec_id))

    def start(self, record: SandboxRecord, exec_id: str, args: dict[str, Any]) -> FsWatch:
        watch = FsWatch(record, exec_id, args)
        running = sum(1 for w in self._watches.values() if w.record.id == record.id and w.code is None)
        self._remember(watch)
        if running >= MAX_PER_SANDBOX:
            watch.finish(1, "Other", f"this sandbox has {running} watches running, its maximum: end one (leave "
                                     f"its loop) first")
            return watch
        task = asyncio.get_running_loop().create_task(self._run(watch))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return watch

    def __len__(self) -> int:
        return len(self._watches)

    def _remember(self, watch: FsWatch) -> None:
        self._watches[(watch.record.id, watch.exec_id)] = watch
        if len(self._watches) > MAX_WATCHES:
            ended = sorted((w for w in self._watches.values() if w.code is not None), key=lambda w: w.ended_at)
            for old in ended[:len(self._watches) - MAX_WATCHES]:
                del self._watches[(old.record.id, old.exec_id)]

    async def _run(self, watch: FsWatch) -> None:
        loop = asyncio.get_running_loop()
        release = await self.admission.acquire(f"watch:{watch.record.instance_id}")

        def post(fn: Callable[..., None], *args: Any) -> None:
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop is closed: the server stopped
                watch.closed = True

        def run() -> None:
            try:
                relative = _in_workspace(watch.args.get("path"))
                if relative is None:
                    code, kind, message = _watch_in_sandbox(self.sandboxes, watch, post)
                else:
                    code, kind, message = _watch(self.host, watch, relative, post)
            except WatchFailed as failed:
                code, kind, message = 1, failed.kind, failed.message
            except Exception as exc:  # noqa: BLE001 - a watch thread reports, never dies silently
                code, kind, message = 1, "Other", f"the watch failed: {exc!r}"
            post(watch.finish, code, kind, message)
            Admission.release_from_thread(loop, release)

        try:
            threading.Thread(target=run, name=f"modal-watch-{watch.exec_id}", daemon=True).start()
        except BaseException:
            release()
            raise


class _Left(Exception):
    """The watch's reader went away."""


def _watch(host: Any, watch: FsWatch, relative: str, post: Callable[..., None]) -> tuple[int, str, str]:
    """Run ``watch`` of ``relative`` (in the workspace) slice by slice; (exit code, error kind, message)."""
    args = watch.args
    instance = watch.record.instance_id
    try:
        info = host.stat_file(host_pb.HostStatFileRequest(provider=PROVIDER, stat=pb.StatFileRequest(
            instance_id=instance, path=relative)))
    except NotFound as exc:
        return 1, "NotFound", exc.message
    except WorldError as exc:
        return 1, "Other", exc.message
    if info.kind == "symlink":
        return 1, "Other", (f"{args.get('path')} is a symlink: worldrt's watch never follows one; watch the path "
                            f"it leads to")
    only = None
    folder = relative
    if info.kind != "dir":
        only, folder = relative, posixpath.dirname(relative)
    wanted = args.get("filter")
    wanted = set(wanted) if isinstance(wanted, list) else None
    timeout = args.get("timeout_secs")
    deadline = time.monotonic() + timeout if isinstance(timeout, int) and timeout > 0 else None
    recursive = bool(args.get("recursive")) and only is None

    def emit(kind: str, paths: list[str]) -> None:
        if watch.closed:
            raise _Left()
        if wanted is None or kind in wanted:
            post(watch.emit, kind, paths)

    def on_event(event: pb.FileWatchEvent) -> None:
        kind = _KINDS.get(event.kind)
        if kind is None:  # READY
            if watch.closed:
                raise _Left()
            return
        if kind == "Unknown":
            emit(kind, [_absolute(folder if only is None else only)])
            return
        names = [p for p in (event.old_path, event.path) if p] if event.kind == pb.FILE_EVENT_RENAME else [event.path]
        if only is not None and only not in names:
            return
        emit(kind, [_absolute(p) for p in names])

    first = True
    try:
        while not watch.closed:
            left = SLICE_S if deadline is None else min(SLICE_S, deadline - time.monotonic())
            if left < 1:
                return 0, "", ""
            if not first:  # what changed between two slices went unseen
                emit("Unknown", [_absolute(folder if only is None else only)])
            first = False
            started = time.monotonic()
            ended = host.watch_files(host_pb.HostWatchFilesRequest(provider=PROVIDER, watch=pb.WatchFilesRequest(
                instance_id=instance, path=folder, recursive=recursive, timeout_s=int(left))), on_event)
            if time.monotonic() - started < int(left) - 1 and "timeout" not in ended.message:
                return 0, "", ""  # the folder went or the instance ended, not the slice's end
    except _Left:
        pass
    except NotFound as exc:
        return 1, "NotFound", exc.message
    except WorldError as exc:
        return 1, "Other", exc.message
    return 0, "", ""


def _watch_in_sandbox(sandboxes: Sandboxes, watch: FsWatch, post: Callable[..., None]) -> tuple[int, str, str]:
    """Run ``watch`` by the helper process in the sandbox (``_watchhelper``), its output checked line by
    line; (exit code, error kind, message). The helper is killed whenever it may still run at the end."""
    processes: Any = sandboxes.processes
    record, pid = watch.record, watch.exec_id
    wanted = watch.args.get("filter")
    wanted = set(wanted) if isinstance(wanted, list) else None
    timeout = watch.args.get("timeout_secs")
    # The helper ends itself at its timeout; the process's own timeout is the backstop.
    limit_s = timeout + 30 if isinstance(timeout, int) and 0 < timeout < 10**6 else 0
    processes.start(record, pid, command_line(json.dumps({"Watch": watch.args})), {}, "", limit_s)
    pending = bytearray()
    offset = 0

    def lines(chunk: pb.ProcessOutputChunk) -> None:
        nonlocal offset
        if watch.closed:
            raise _Left()
        offset = chunk.offset + len(chunk.data)
        pending.extend(chunk.data)
        while (newline := pending.find(b"\n")) >= 0:
            line = bytes(pending[:newline])
            del pending[:newline + 1]
            if line.strip():
                kind, paths = parse_line(line)
                if wanted is None or kind in wanted:
                    post(watch.emit, kind, paths)
        if len(pending) > MAX_LINE:
            raise BadLine(f"a line longer than the {MAX_LINE} bytes one may have")

    try:
        if watch.closed:
            return 0, "", ""
        while True:
            end = processes.read(record, pid, pb.PROCESS_STDOUT, offset, lines)
            if end.ended or watch.closed:
                break
            offset = max(offset, end.stdout_offset)
        if pending.strip() and not watch.closed:
            raise BadLine("a last line with no end")
        if watch.closed:
            return 0, "", ""
        info = processes.wait(record, pid, 5.0)
        if info.state == pb.PROCESS_EXITED and info.exit_code == 0:
            return 0, "", ""
        kind, message = parse_error(_stderr(processes, record, pid))
        return 1, kind, message
    except _Left:
        return 0, "", ""
    except BadLine as bad:
        return 1, "Other", f"the watch helper in the sandbox wrote {bad}; the watch ended"
    except NotFound as exc:
        return 1, "NotFound", exc.message
    except WorldError as exc:
        return 1, "Other", exc.message
    finally:
        _kill(sandboxes, record, pid)


def _stderr(processes: Any, record: SandboxRecord, pid: str) -> bytes:
    got = bytearray()

    def keep(chunk: pb.ProcessOutputChunk) -> None:
        got.extend(chunk.data)
        if len(got) >= MAX_ERROR:
            raise _Left()

    try:
        processes.read(record, pid, pb.PROCESS_STDERR, 0, keep)
    except (_Left, WorldError):
        pass
    return bytes(got[:MAX_ERROR])


def _kill(sandboxes: Sandboxes, record: SandboxRecord, pid: str) -> None:
    try:
        sandboxes.call(signal_process=pb.SignalProcessRequest(instance_id=record.instance_id, process_id=pid,
                                                              signal=0))
    except WorldError:
        pass  # it has ended already, or its sandbox has
