"""A watcher of one folder of a member's workspace: inotify events sent to the daemon as frames (runs inside
the sandbox, started by the member for WatchFiles as ``python -I -S _watcher.py SOCK_FD DIR_FD PATH
RECURSIVE MAX_DIRS``).

It never follows a path: the folder comes as a descriptor the member opened by its safe walk, each
sub-folder is opened relative to its parent's descriptor with O_NOFOLLOW, and a watch is added through
``/proc/self/fd/N`` (the descriptor itself), so a folder swapped for a symlink is never watched through
it. Bounded: at most MAX_DIRS folders are watched (past it: an overflow event), at most MAX_PENDING
events wait for the daemon (past it they are counted and dropped, and an overflow event says how many),
and the kernel's own queue overflow is reported the same way. It ends when the daemon closes its end,
when the watched folder goes, or when the member dies (PR_SET_PDEATHSIG). Standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR, IN_EXCL_UNLINK, IN_ISDIR = 0x4000, 0x8000, 0x01000000, 0x04000000, 0x40000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF |
        IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
_EVENT = struct.Struct("iIII")
MAX_PENDING = 4096
ROOT_CHECK_MS = 500
EVENTS_PER_FRAME = 128
_PR_SET_PDEATHSIG = 1
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class Watcher:
    def __init__(self, sock: socket.socket, root_fd: int, root: str, recursive: bool, max_dirs: int) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.sock = sock
        self.recursive = recursive
        self.max_dirs = max_dirs
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.paths: dict[int, str] = {}  # watch descriptor -> folder, relative to the workspace
        self.dir_fds: dict[int, int] = {}  # watch descriptor -> the folder's descriptor
        self.root_wd = -1
        self.pending: list[list[Any]] = []
        self.dropped = 0
        self.capped = False
        self.out = b""
        self.ended = ""
        self.root_wd = self._watch(root_fd, root, announce=False)
        if self.root_wd < 0:
            raise OSError(errno.ENOSPC, "could not watch the folder")

    # watches ------------------------------------------------------------------------------------
    def _watch(self, dir_fd: int, path: str, announce: bool) -> int:
        """Watch the folder open at ``dir_fd`` (kept open while it is watched, closed on failure), and with
        recursive its sub-folders; with ``announce`` every entry found in it is reported as created (it may
        have filled before the watch was in place)."""
        if len(self.paths) >= self.max_dirs:
            os.close(dir_fd)
            if not self.capped:
                self.capped = True
                self._overflow(f"the watcher reached its cap of {self.max_dirs} folders: {path} and folders "
                               f"after it are not watched")
            return -1
        wd: int = self.libc.inotify_add_watch(self.fd, f"/proc/self/fd/{dir_fd}".encode(), MASK)
        if wd < 0:
            os.close(dir_fd)
            self._overflow(f"{path} could not be watched ({os.strerror(ctypes.get_errno())})")
            return -1
        old = self.dir_fds.pop(wd, None)
        if old is not None:
            os.close(old)
        self.paths[wd] = path
        self.dir_fds[wd] = dir_fd
        if not (self.recursive or announce):
            return wd
        with os.scandir(dir_fd) as entries:
            found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        for name, is_dir in found:
            if not _utf8(name):
                self.dropped += 1
                continue
            child = _join(path, name)
            if announce:
                self._event("create", child, "", is_dir)
            if is_dir and self.recursive:
                self._add_dir(wd, name, child, announce)
        return wd

    def _add_dir(self, parent_wd: int, name: str, path: str, announce: bool = True) -> None:
        """Watch a folder that appeared, opened relative to its watched parent without following a symlink."""
        parent = self.dir_fds.get(parent_wd)
        if parent is None:
            return
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError:
            return  # gone, or swapped for something that is not a folder, since it was seen
        self._watch(sub, path, announce)

    def _drop(self, wd: int) -> None:
        self.paths.pop(wd, None)
        fd = self.dir_fds.pop(wd, None)
        if fd is not None:
            os.close(fd)

    def _forget(self, prefix: str) -> None:
        for wd, path in list(self.paths.items()):
            if path == prefix or path.startswith(prefix + "/"):
                self.libc.inotify_rm_watch(self.fd, wd)
                self._drop(wd)

    def _rename_dirs(self, old: str, new: str) -> None:
        for wd, path in list(self.paths.items()):
            if path == old or path.startswith(old + "/"):
                self.paths[wd] = new + path[len(old):]

    # events -------------------------------------------------------------------------------------
    def _event(self, kind: str, path: str, old: str, is_dir: bool) -> None:
        if self.pending and self.pending[-1] == [kind, path, old, is_dir] and kind == "modify":
            return  # a run of writes to one file is one event
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append([kind, path, old, is_dir])

    def _overflow(self, message: str) -> None:
        self.pending.append(["overflow", "", "", False, self.dropped, message])
        self.dropped = 0

    def read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        moves: dict[int, tuple[str, bool]] = {}
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, cookie, size = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size: offset + _EVENT.size + size].rstrip(b"\0")
            offset += _EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                self._overflow("the kernel's queue of changes overflowed: some changes were lost")
                continue
            if wd == self.root_wd and mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                self.ended = "the watched folder was removed or moved"
                return
            if mask & IN_IGNORED:
                self._drop(wd)
                continue
            folder = self.paths.get(wd)
            if folder is None or not raw or mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                continue
            name = os.fsdecode(raw)
            if not _utf8(name):
                self.dropped += 1
                continue
            path, is_dir = _join(folder, name), bool(mask & IN_ISDIR)
            if mask & IN_MOVED_FROM:
                moves[cookie] = (path, is_dir)
            elif mask & IN_MOVED_TO:
                source = moves.pop(cookie, None)
                if source is not None:
                    self._event("rename", path, source[0], is_dir)
                    if is_dir:
                        self._rename_dirs(source[0], path)
                else:
                    self._event("create", path, "", is_dir)
                    if is_dir and self.recursive:
                        self._add_dir(wd, name, path)
            elif mask & IN_CREATE:
                self._event("create", path, "", is_dir)
                if is_dir and self.recursive:
                    self._add_dir(wd, name, path)
            elif mask & IN_DELETE:
                self._event("remove", path, "", is_dir)
                if is_dir:
                    self._forget(path)  # its descriptor would keep it from being gone
            elif mask & IN_MODIFY:
                self._event("modify", path, "", is_dir)
            elif mask & IN_ATTRIB:
                self._event("chmod", path, "", is_dir)
        for path, is_dir in moves.values():  # moved out of the watched folder
            self._event("rename", "", path, is_dir)
            if is_dir:
                self._forget(path)
        if self.dropped:
            self._overflow(f"{self.dropped} changes were dropped: the watcher fell behind")

    # the daemon's end ---------------------------------------------------------------------------
    def flush(self) -> bool:
        """Send what waits, as far as the socket takes it; False when the daemon's end is gone."""
        while True:
            if not self.out:
                if not self.pending:
                    return True
                batch, self.pending = self.pending[:EVENTS_PER_FRAME], self.pending[EVENTS_PER_FRAME:]
                body = json.dumps({"events": batch}, separators=(",", ":")).encode()
                self.out = struct.pack(">I", len(body)) + body
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return True
            except OSError:
                return False
            self.out = self.out[sent:]

    def _root_gone(self) -> bool:
        """The watched folder was removed: its descriptor here keeps the kernel from saying so."""
        fd = self.dir_fds.get(self.root_wd)
        try:
            return fd is None or os.fstat(fd).st_nlink == 0
        except OSError:
            return True

    def serve(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.sock.fileno(), select.POLLIN)
        while not self.ended:
            if not self.flush():
                return
            want = select.POLLIN | (select.POLLOUT if self.out or self.pending else 0)
            poller.modify(self.sock.fileno(), want)
            ready = poller.poll(ROOT_CHECK_MS)
            if self._root_gone():
                self.ended = "the watched folder was removed or moved"
            for fd, events in ready:
                if fd == self.fd:
                    self.read()
                elif events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    return  # the daemon never sends: readable means its end closed
        self.pending.append(["ended", "", "", False, 0, self.ended])
        self.sock.setblocking(True)
        self.flush()


def _join(folder: str, name: str) -> str:
    return name if folder in ("", ".") else f"{folder}/{name}"


def main(argv: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        return  # the member is already gone
    sock = socket.socket(fileno=int(argv[1]))
    try:
        watcher = Watcher(sock, int(argv[2]), argv[3], argv[4] == "1", int(argv[5]))
    except OSError as exc:
        body = json.dumps({"events": [["ended", "", "", False, 0, f"the folder could not be watched: {exc}"]]})
        sock.sendall(struct.pack(">I", len(body)) + body.encode())
        return
    watcher.pending.insert(0, ["ready", argv[3], "", True])
    sock.setblocking(False)
    watcher.serve()


if __name__ == "__main__":
    main(sys.argv)
