"""File operations a member does on its own workspace, for the daemon's file RPCs (runs inside the sandbox).

Other processes of the sandbox run while a request is served and may be hostile: between two looks a
folder can become a symlink. So no path is ever handed to the kernel whole. A path is walked one name at
a time from a descriptor of the workspace, each folder opened with O_NOFOLLOW relative to the one before
(``openat``), and the last name is used relative to its folder's descriptor, with O_NOFOLLOW where it is
opened. A symlink met on the way is read and followed here, by the same walk: one whose target leads out
of the workspace (an absolute target elsewhere, or ``..`` above the top) is refused, and a name swapped
for a symlink after it was looked at fails its O_NOFOLLOW open and is looked at again. What a request
refuses is raised as ``Refused`` with a kind the daemon maps to a status. Standard library only: this
file is copied into the sandbox beside the agent.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

WORKSPACE = "/workspace"
PATH_MAX = 4096
NAME_MAX = 255
# Symlinks followed in one path at most (the kernel's own limit), and retries of a name that changed
# between the look and the open.
MAX_LINKS = 40
MAX_RETRIES = 100
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


class Refused(Exception):
    """A file request the member refuses: ``kind`` is "invalid" (the path), "exhausted" (a limit),
    "missing" (nothing there), "exists" (something already there), or "" (a state the caller can change)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def utf8(text: str, what: str) -> str:
    """``text`` when it is valid UTF-8 (what the daemon and its callers can carry); refused otherwise."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            shown = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            shown = text.encode("utf-8", "backslashreplace")
        raise Refused("invalid", f"{what} {shown!r} is not valid UTF-8: rename it from code in the instance "
                                 f"(os.rename with bytes paths)") from None
    return text


def _parts(path: Any) -> list[str]:
    """The names of a requested path, relative to the workspace; refused when it cannot be one."""
    if not isinstance(path, str) or "\0" in path:
        raise Refused("invalid", f"a path must be a string without NUL, at most {PATH_MAX} bytes")
    encoded = utf8(path, "the path").encode()
    if len(encoded) > PATH_MAX:
        raise Refused("invalid", f"the path is {len(encoded)} bytes long, above the {PATH_MAX} bytes a path may have")
    for name in path.split("/"):
        if len(name.encode()) > NAME_MAX:
            raise Refused("invalid", f"the name {name[:40]!r}... in the path is {len(name.encode())} bytes long, "
                                     f"above the {NAME_MAX} bytes a file name may have")
    if path.startswith("/"):
        if not (os.path.normpath(path) + "/").startswith(WORKSPACE + "/") or "/../" in path + "/":
            raise Refused("invalid", f"{path} is outside the workspace ({WORKSPACE})")
        path = path[len(WORKSPACE):]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused("invalid", f"{path!r} climbs out with '..': paths stay in the workspace")
    return parts


class Resolved:
    """Where a path ends: the descriptor of its folder and the last name in it ("" for the workspace
    itself), with the folders open on the way (closed by ``close``)."""

    def __init__(self, fds: list[int], names: list[str], name: str) -> None:
        self.fds = fds
        self.names = names
        self.name = name

    @property
    def dir_fd(self) -> int:
        return self.fds[-1]

    @property
    def rel(self) -> str:
        """The path relative to the workspace ("." for the workspace), as the walk found it."""
        return "/".join(self.names + ([self.name] if self.name else [])) or "."

    def shown(self) -> str:
        return utf8(self.rel, "the path a symlink leads to,")


def _open_dir(dir_fd: int, name: str) -> int:
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


@contextmanager
def resolve(path: Any, *, follow: bool = True, make_parents: int | None = None) -> Iterator[Resolved]:
    """Walk ``path`` from the workspace. Folders on the way must exist (NotFound otherwise) unless
    ``make_parents`` gives the mode to make them with. With ``follow`` a symlink as the last name is
    followed too (within the workspace), so the result names what it leads to."""
    pending = _parts(path)
    top = os.open(WORKSPACE, _DIR_FLAGS)
    fds: list[int] = [top]
    names: list[str] = []
    links = retries = 0
    try:
        while pending:
            name = pending.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if len(fds) == 1:
                    raise Refused("invalid", f"{path} leads out of the workspace through a symlink (a '..' above it)")
                os.close(fds.pop())
                names.pop()
                continue
            last = not pending
            try:
                st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                if last:
                    yield Resolved(fds, names, name)
                    return
                if make_parents is None:
                    raise Refused("missing", f"no folder {'/'.join(names + [name])} in the workspace") from None
                try:
                    os.mkdir(name, make_parents, dir_fd=fds[-1])
                except FileExistsError:
                    retries += 1
                    if retries > MAX_RETRIES:
                        raise
                pending.insert(0, name)
                continue
            if stat.S_ISLNK(st.st_mode) and (follow or not last):
                links += 1
                if links > MAX_LINKS:
                    raise Refused("invalid", f"{path} leads through more than {MAX_LINKS} symlinks")
                try:
                    target = os.readlink(name, dir_fd=fds[-1])
                except OSError as exc:
                    # No longer a symlink (or gone) since the look: look again (a few times at most).
                    if exc.errno not in (errno.EINVAL, errno.ENOENT) or retries >= MAX_RETRIES:
                        raise
                    retries += 1
                    links -= 1
                    pending.insert(0, name)
                    continue
                if target.startswith("/"):
                    if not (os.path.normpath(target) + "/").startswith(WORKSPACE + "/"):
                        shown = target.encode("utf-8", "backslashreplace").decode()
                        raise Refused("invalid", f"{'/'.join(names + [name])} leads out of the workspace through a "
                                                 f"symlink (to {shown})")
                    for fd in fds[1:]:
                        os.close(fd)
                    del fds[1:]
                    names.clear()
                    target = target[len(WORKSPACE):]
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if last:
                yield Resolved(fds, names, name)
                return
            if not stat.S_ISDIR(st.st_mode):
                raise Refused("invalid", f"the path cannot be used: {'/'.join(names + [name])} is a file, not a folder")
            try:
                fds.append(_open_dir(fds[-1], name))
            except OSError as exc:
                # Swapped for a symlink or a file since the look: look again (a few times at most).
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT) or retries >= MAX_RETRIES:
                    raise
                retries += 1
                pending.insert(0, name)
                continue
            names.append(name)
        yield Resolved(fds, names, "")
    finally:
        for fd in fds:
            os.close(fd)
        fds.clear()


def kind(mode: int) -> str:
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "symlink" if stat.S_ISLNK(mode) \
        else "other"


def _info(where: Resolved, st: os.stat_result, target: str = "") -> dict[str, Any]:
    rel = where.shown()
    return {"name": "" if rel == "." else rel.rsplit("/", 1)[-1], "path": "" if rel == "." else rel,
            "size": st.st_size, "mode": st.st_mode & 0o7777, "kind": kind(st.st_mode), "mtime_ns": st.st_mtime_ns,
            "target": target, "uid": st.st_uid, "gid": st.st_gid}


def _lstat(where: Resolved) -> os.stat_result:
    if not where.name:
        return os.fstat(where.dir_fd)
    try:
        return os.stat(where.name, dir_fd=where.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise Refused("missing", f"no file {where.shown()} in the workspace") from None


def _entry(where: Resolved) -> dict[str, Any]:
    for _ in range(MAX_RETRIES):
        st = _lstat(where)
        if not stat.S_ISLNK(st.st_mode):
            return _info(where, st)
        try:
            target = os.readlink(where.name, dir_fd=where.dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise
            continue  # no longer a symlink since the look: look again
        return _info(where, st, utf8(target, "the target of the symlink")[:PATH_MAX])
    raise Refused("", f"{where.shown()} kept changing while it was looked at")


def stat_file(msg: dict[str, Any], _fd: int | None) -> dict[str, Any]:
    with resolve(msg.get("path") or "", follow=False) as where:
        return {"entry": _entry(where)}


def make_directory(msg: dict[str, Any], _fd: int | None) -> dict[str, Any]:
    parents = msg.get("parents") is True
    mode = msg.get("mode")
    mode = (mode & 0o777 if isinstance(mode, int) else 0) or 0o755
    with resolve(msg.get("path"), follow=False, make_parents=0o755 if parents else None) as where:
        if not where.name:
            if parents:
                return {"entry": _entry(where), "created": False}
            raise Refused("exists", "the workspace itself is already there")
        try:
            os.mkdir(where.name, mode, dir_fd=where.dir_fd)
            created = True
        except FileExistsError:
            if not parents or not stat.S_ISDIR(_lstat(where).st_mode):
                raise Refused("exists", f"{where.shown()} is already there") from None
            created = False
        if created:
            _set_mode(where, mode)
        return {"entry": _entry(where), "created": created}


def _set_mode(where: Resolved, mode: int) -> None:
    """Give the folder just made exactly ``mode`` (mkdir took the umask off), through a descriptor opened
    without following a symlink; one swapped in meanwhile keeps what it has."""
    try:
        fd = os.open(where.name, _DIR_FLAGS, dir_fd=where.dir_fd)
    except OSError:
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _renameat2(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """rename that fails with EEXIST when the destination is there (the kernel's RENAME_NOREPLACE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    call = getattr(libc, "renameat2", None)
    if call is None:  # a C library before glibc 2.28: check, then rename (the sandbox's own files only)
        try:
            os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            return
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
    if call(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def move_file(msg: dict[str, Any], _fd: int | None) -> dict[str, Any]:
    with resolve(msg.get("source"), follow=False) as src, resolve(msg.get("destination"), follow=False) as dst:
        if not src.name or not dst.name:
            raise Refused("invalid", "the workspace itself cannot be moved or replaced")
        _lstat(src)
        try:
            if msg.get("overwrite") is True:
                os.rename(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)
            else:
                _renameat2(src.dir_fd, src.name, dst.dir_fd, dst.name)
        except FileExistsError:
            raise Refused("exists", f"{dst.shown()} is already there (move with overwrite to replace it)") from None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise Refused("invalid", f"{src.shown()} cannot move into itself") from None
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise Refused("exists", f"{dst.shown()} is a folder that is not empty") from None
            if exc.errno in (errno.EISDIR, errno.ENOTDIR):
                raise Refused("invalid", f"{src.shown()} and {dst.shown()} are not both folders or both files") \
                    from None
            raise
        return {"entry": _entry(dst)}


def _remove_tree(parent: int, name: str) -> int:
    """Remove the folder ``name`` of ``parent`` and everything in it, one descriptor at a time (a symlink
    inside is removed, never followed); how many entries went."""
    removed = 0
    stack = [(parent, name, _open_dir(parent, name))]
    try:
        while stack:
            pfd, pname, dfd = stack[-1]
            deeper = None
            with os.scandir(dfd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        try:
                            deeper = (dfd, entry.name, _open_dir(dfd, entry.name))
                            break
                        except OSError as exc:
                            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                                raise
                    try:
                        os.unlink(entry.name, dir_fd=dfd)
                        removed += 1
                    except FileNotFoundError:
                        pass
            if deeper is not None:
                stack.append(deeper)
                continue
            stack.pop()
            os.close(dfd)
            os.rmdir(pname, dir_fd=pfd)
            removed += 1
    finally:
        for _, _, dfd in stack:
            os.close(dfd)
    return removed


def remove_file(msg: dict[str, Any], _fd: int | None) -> dict[str, Any]:
    with resolve(msg.get("path"), follow=False) as where:
        if not where.name:
            raise Refused("invalid", "the workspace itself cannot be removed (remove what is in it)")
        st = _lstat(where)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(where.name, dir_fd=where.dir_fd)
            return {"kind": kind(st.st_mode), "removed": 1}
        if msg.get("recursive") is True:
            return {"kind": "dir", "removed": _remove_tree(where.dir_fd, where.name)}
        try:
            os.rmdir(where.name, dir_fd=where.dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise Refused("", f"{where.shown()} is a folder that is not empty: remove it with recursive") from None
            raise
        return {"kind": "dir", "removed": 1}


def open_dir(path: Any) -> tuple[int, str]:
    """A descriptor of the folder ``path`` names (symlinks within the workspace followed), and its path."""
    with resolve(path or "", follow=True) as where:
        if not where.name:
            return os.dup(where.dir_fd), where.shown()
        try:
            return _open_dir(where.dir_fd, where.name), where.shown()
        except FileNotFoundError:
            raise Refused("missing", f"no folder {where.shown()} in the workspace") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise Refused("invalid", f"{where.shown()} is not a folder") from None
            raise
