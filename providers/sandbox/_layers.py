"""The layer stream: how a build sandbox sends the image it made, and how the daemon makes a layer of it.

The packer (``PACKER``, run inside the build sandbox as the build's uid once pip is done) walks the image
folder and writes one record per entry on its stdout: a fixed header (kind, mode, size, path length,
target length), the path, a link's target, then a file's bytes; a record of kind ``E`` ends the stream.
Nothing the packer says is trusted, and what it walks may change under it (the build's own processes
still run): the daemon (``unpack``) reads the stream as data only and makes every entry itself, relative
to a descriptor of the staging folder it holds, one path part at a time: a folder is opened with
O_DIRECTORY|O_NOFOLLOW and a file made with O_CREAT|O_EXCL|O_NOFOLLOW, so no link, whoever made it, is
ever followed, and nothing is written outside the folder. Python's tarfile is not used: its extraction
filters have had bypasses (CVE-2025-4517: a chain of links past PATH_MAX) and do not exist on 3.11.2.

A layer made here holds
* only regular files (0644, or 0755 when the sandbox's file had an execute bit: no setuid, setgid or
  sticky bit), folders (0755) and links whose target, made lexically normal, stays inside the layer from
  where the link is; the target is stored normalized, so the kernel resolves exactly what was checked;
* paths that are UTF-8, under ``lib/`` or ``bin/``, of at most MAX_DEPTH parts of at most 255 bytes and
  MAX_PATH_BYTES in all, no part empty, ``.`` or ``..``; nothing sent twice, nothing over what the image
  itself keeps (``make_skeleton``: its interpreter links and its site-packages folders, made first);
* at most MAX_ENTRIES entries and ``limit`` bytes of file content.
Anything else fails the build with LayerRefused (FAILED_PRECONDITION), naming the path and why; the
caller removes the staging folder. The layer's digest is the sha256 of its sorted tree (path, kind,
mode, and a file's sha256 or a link's target), computed here from what was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from worldrt import errors as err

# Caps of one layer: far above what pip installs (site-packages paths are ~100-250 bytes, ~15 deep).
MAX_PATH_BYTES = 1024
MAX_DEPTH = 48
MAX_NAME_BYTES = 255
MAX_LINK_BYTES = 1024
MAX_ENTRIES = 200_000
TOPS = ("lib", "bin")
_PATH_MAX = 4096  # what the stream may say at all: read, then checked against the caps above
_HEADER = struct.Struct(">cIQHH")  # kind, mode, size, path length, target length
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# Runs in the build sandbox after pip, appended to the build script (``layer`` and ``args`` are its own):
# every entry under lib/ and bin/ but the interpreter links, as records on stdout.
PACKER = r'''
import stat as _stat, struct as _struct

def _pack(layer, skip):
    out = os.fdopen(1, "wb", buffering=1 << 20)
    header = _struct.Struct(">cIQHH")

    def record(kind, mode, size, rel, target=b""):
        out.write(header.pack(kind, mode, size, len(rel), len(target)) + rel + target)

    for top in ("lib", "bin"):
        for folder, dirs, names in os.walk(os.path.join(layer, top)):
            dirs.sort()
            for name in sorted(dirs + names):
                path = os.path.join(folder, name)
                rel = os.fsencode(os.path.relpath(path, layer))
                if rel in skip:
                    continue
                try:
                    st = os.lstat(path)
                    if _stat.S_ISDIR(st.st_mode):
                        record(b"d", st.st_mode & 0o7777, 0, rel)
                    elif _stat.S_ISLNK(st.st_mode):
                        record(b"l", 0o777, 0, rel, os.fsencode(os.readlink(path)))
                    elif _stat.S_ISREG(st.st_mode):
                        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                        with os.fdopen(fd, "rb") as f:
                            st = os.fstat(fd)
                            if not _stat.S_ISREG(st.st_mode):
                                record(b"o", st.st_mode & 0o7777, 0, rel)
                                continue
                            record(b"f", st.st_mode & 0o7777, st.st_size, rel)
                            left = st.st_size
                            while left:  # exactly the size sent, whatever the file does now
                                try:
                                    chunk = f.read(min(left, 1 << 20))
                                except OSError:
                                    chunk = b""
                                chunk = chunk or bytes(min(left, 1 << 20))
                                out.write(chunk)
                                left -= len(chunk)
                    else:
                        record(b"o", st.st_mode & 0o7777, 0, rel)
                except FileNotFoundError:
                    continue
                except BrokenPipeError:
                    raise
                except OSError as exc:  # unreadable by the build's own uid: not part of the image
                    print(f"worldrt: {rel!r} left out of the image: {exc}", file=sys.stderr, flush=True)
    record(b"E", 0, 0, b"")
    out.flush()

print("@@worldrt packing", file=sys.stderr, flush=True)
_pack(layer, {os.fsencode("bin/" + name) for name in args["links"]})
'''


class LayerRefused(err.FailedPrecondition):
    """The build's layer holds something an image may not (the message names the path and why)."""


class StreamCut(err.FailedPrecondition):
    """The stream ended before its end record: the packer stopped (pip's exit code says why)."""


@dataclass(frozen=True)
class Unpacked:
    digest: str  # sha256 of the layer's tree, as written here
    size_bytes: int  # bytes of its regular files
    entries: int


def _exact(stream: IO[bytes], n: int) -> bytes:
    parts, left = [], n
    while left:
        data = stream.read(min(left, _CHUNK))
        if not data:
            raise StreamCut("the build's stream ended in the middle of an entry")
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def _text(raw: bytes, what: str) -> str:
    if b"\0" in raw:
        raise LayerRefused(f"{what} {raw[:80]!r} holds a NUL byte")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LayerRefused(f"{what} {raw[:80]!r} is not UTF-8: an image's names must be") from None


def check_path(path: str) -> tuple[str, ...]:
    """The parts of an entry's path, or LayerRefused saying what is wrong with it."""
    parts = tuple(path.split("/"))
    if path.startswith("/"):
        raise LayerRefused(f"{path[:200]!r} is an absolute path: an image's entries are under lib/ or bin/")
    if any(p in ("", ".", "..") for p in parts):
        raise LayerRefused(f"{path[:200]!r} has an empty, '.' or '..' part")
    if parts[0] not in TOPS:
        raise LayerRefused(f"{path[:200]!r} is outside lib/ and bin/, the folders an image's build fills")
    if len(parts) > MAX_DEPTH:
        raise LayerRefused(f"{path[:200]!r}… is {len(parts)} folders deep, above the {MAX_DEPTH} an image may be")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise LayerRefused(f"{path[:200]!r}… is {len(path.encode())} bytes long, above the {MAX_PATH_BYTES} "
                           f"an image's paths may be")
    for part in parts:
        if len(part.encode()) > MAX_NAME_BYTES:
            raise LayerRefused(f"{path[:200]!r}… has a name of {len(part.encode())} bytes, above {MAX_NAME_BYTES}")
    return parts


def check_link(parts: tuple[str, ...], target: str) -> str:
    """A link's target, normalized, when it stays inside the layer from where the link is; else LayerRefused."""
    where = "/".join(parts)
    if not target or len(target.encode()) > MAX_LINK_BYTES:
        raise LayerRefused(f"the link {where!r} has an empty target or one over {MAX_LINK_BYTES} bytes")
    if target.startswith("/"):
        raise LayerRefused(f"the link {where!r} points at {target[:200]!r}, an absolute path: an image's links "
                           f"must stay inside it")
    normal = posixpath.normpath(target)
    ups = 0
    for part in normal.split("/"):
        if part != "..":
            break
        ups += 1
    if ups > len(parts) - 1:
        raise LayerRefused(f"the link {where!r} points at {target[:200]!r}, outside the image")
    return normal


def _mode(kind: bytes, mode: int) -> int:
    if kind == b"d":
        return 0o755
    return 0o755 if mode & 0o111 else 0o644


class _Tree:
    """The entries of one folder, made relative to a descriptor of it; the folders of the last path
    stay open (at most MAX_DEPTH descriptors)."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.limit = limit
        self.size_bytes = 0
        self._open: list[tuple[str, int]] = []  # the folders of the last parent, from the root down
        self._lines: dict[str, bytes] = {}
        for folder in skeleton_dirs():
            self._lines[folder] = self._line(folder, "d", 0o755, "")

    def close(self) -> None:
        for _, fd in self._open:
            os.close(fd)
        self._open = []
        os.close(self.root_fd)

    @staticmethod
    def _line(path: str, kind: str, mode: int, value: str) -> bytes:
        return json.dumps([path, kind, mode, value]).encode() + b"\n"

    def _new(self, path: str) -> None:
        """Room for one more entry at ``path``, which the layer must not hold yet."""
        if path in self._lines:
            raise LayerRefused(f"{path[:200]!r} is sent twice, or over what the image keeps itself (its interpreter "
                               f"links and site-packages folders)")
        if len(self._lines) >= MAX_ENTRIES:
            raise LayerRefused(f"the image holds more than {MAX_ENTRIES} entries")

    def _count(self, path: str, kind: str, mode: int, value: str = "") -> None:
        self._lines[path] = self._line(path, kind, mode, value)

    def _folder(self, parts: tuple[str, ...]) -> int:
        """A descriptor of the folder ``parts`` (made when missing), never through a link."""
        keep = 0
        while keep < min(len(parts), len(self._open)) and self._open[keep][0] == parts[keep]:
            keep += 1
        for _, fd in self._open[keep:]:
            os.close(fd)
        del self._open[keep:]
        for i in range(keep, len(parts)):
            parent = self._open[-1][1] if self._open else self.root_fd
            name = parts[i]
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                self._new("/".join(parts[:i + 1]))
                self._count("/".join(parts[:i + 1]), "d", 0o755)
                os.mkdir(name, 0o755, dir_fd=parent)
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                os.fchmod(fd, 0o755)
            except OSError:
                raise LayerRefused(f"{'/'.join(parts)[:200]!r} goes through {'/'.join(parts[:i + 1])[:200]!r}, "
                                   f"which is a link or a file, not a folder") from None
            self._open.append((name, fd))
        return self._open[-1][1] if self._open else self.root_fd

    def directory(self, parts: tuple[str, ...]) -> None:
        self._folder(parts)

    def file(self, parts: tuple[str, ...], mode: int, size: int, stream: IO[bytes]) -> None:
        path = "/".join(parts)
        if size > self.limit - self.size_bytes:
            raise err.ResourceExhausted(f"the built image passed its size limit of {self.limit} bytes "
                                        f"(at {path[:200]!r}, {size} bytes)")
        parent = self._folder(parts[:-1])
        self._new(path)
        self._count(path, "f", mode)
        try:
            fd = os.open(parts[-1], _NEW_FILE, 0o600, dir_fd=parent)
        except FileExistsError:
            raise LayerRefused(f"{path[:200]!r} is sent twice, or over what the image keeps itself") from None
        digest = hashlib.sha256()
        try:
            left = size
            while left:
                data = stream.read(min(left, _CHUNK))
                if not data:
                    raise StreamCut(f"the build's stream ended inside {path[:200]!r}")
                digest.update(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                left -= len(data)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self.size_bytes += size
        self._count(path, "f", mode, digest.hexdigest())

    def link(self, parts: tuple[str, ...], target: str) -> None:
        path = "/".join(parts)
        normal = check_link(parts, target)
        parent = self._folder(parts[:-1])
        self._new(path)
        self._count(path, "l", 0o777, normal)
        try:
            os.symlink(normal, parts[-1], dir_fd=parent)
        except FileExistsError:
            raise LayerRefused(f"{path[:200]!r} is sent twice, or over what the image keeps itself") from None

    @property
    def entries(self) -> int:
        return len(self._lines)

    def digest(self) -> str:
        tree = hashlib.sha256()
        for path in sorted(self._lines):
            tree.update(self._lines[path])
        return tree.hexdigest()


def unpack(stream: IO[bytes], root: Path, limit: int) -> Unpacked:
    """Make the layer the stream describes in ``root`` (a folder of the daemon's that holds only the
    image's skeleton): its files' bytes at most ``limit``. Raises LayerRefused, StreamCut or
    ResourceExhausted; what was made stays for the caller to remove."""
    tree = _Tree(root, limit)
    try:
        while True:
            kind, mode, size, path_len, target_len = _HEADER.unpack(_exact(stream, _HEADER.size))
            if kind == b"E":
                return Unpacked(tree.digest(), tree.size_bytes, tree.entries)
            if path_len > _PATH_MAX or target_len > _PATH_MAX:
                raise LayerRefused(f"an entry's path ({path_len} bytes) or link target ({target_len} bytes) is "
                                   f"longer than any a file system holds")
            path = _text(_exact(stream, path_len), "the name")
            target = _text(_exact(stream, target_len), "the link target") if target_len else ""
            parts = check_path(path)
            if kind != b"f" and size:
                raise LayerRefused(f"{path[:200]!r} says it has {size} bytes but is not a file")
            if kind == b"d":
                tree.directory(parts)
            elif kind == b"f":
                tree.file(parts, _mode(kind, mode), size, stream)
            elif kind == b"l":
                tree.link(parts, target)
            elif kind == b"o":
                raise LayerRefused(f"{path[:200]!r} is a device, a fifo or a socket (mode {mode:o}): an image holds "
                                   f"only files, folders and links inside it")
            else:
                raise LayerRefused(f"the build sent an entry of unknown kind {kind!r}")
    finally:
        tree.close()


# the image's own skeleton ------------------------------------------------------------------------------
def site_parts() -> tuple[str, ...]:
    return ("lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")


def skeleton_dirs() -> tuple[str, ...]:
    site = site_parts()
    return ("bin", *("/".join(site[:i + 1]) for i in range(len(site))))


def real_dir(parent_fd: int, name: str) -> int:
    """A descriptor of the folder ``name`` in ``parent_fd``, made 0755 when missing; LayerRefused when
    something else (a link) is there."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    except FileExistsError:
        pass
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        raise LayerRefused(f"the image's {name!r} is a link or a file, not a folder: the layer was made by a "
                           f"build before images were checked; delete it (worldrt image rm) and build again") from None
    os.fchmod(fd, 0o755)
    return fd


def write_skeleton(layer: Path, exe: str, links: tuple[str, ...], cfg: str) -> None:
    """The venv shape of ``layer``: folders bin/ and lib/pythonX.Y/site-packages, the interpreter links in
    bin/ naming ``exe`` and pyvenv.cfg, all made relative to descriptors (never through a link)."""
    root = os.open(layer, _DIR_FLAGS)
    opened = [root]
    try:
        os.fchmod(root, 0o755)
        bin_fd = real_dir(root, "bin")
        opened.append(bin_fd)
        parent = root
        for part in site_parts():
            parent = real_dir(parent, part)
            opened.append(parent)
        for name in links:
            try:
                current: str | None = os.readlink(name, dir_fd=bin_fd)
            except FileNotFoundError:
                current = None
            except OSError:  # a file where a link goes: made by an old build
                current = ""
            if current != exe:
                if current is not None:
                    os.unlink(name, dir_fd=bin_fd)
                os.symlink(exe, name, dir_fd=bin_fd)
        tmp = f".pyvenv.cfg.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, _NEW_FILE, 0o644, dir_fd=root)
        try:
            os.write(fd, cfg.encode())
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        os.replace(tmp, "pyvenv.cfg", src_dir_fd=root, dst_dir_fd=root)
    finally:
        for fd in reversed(opened):
            os.close(fd)


def read_head(folder_fd: int, name: str, limit: int = 64 * 1024) -> bytes:
    """At most ``limit`` bytes of the regular file ``name`` in ``folder_fd`` (b"" when it is not one)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, limit)
    finally:
        os.close(fd)


def packages(layer: Path) -> list[str]:
    """``name==version`` of every distribution in the layer's site-packages, read from the first bytes of
    each one's METADATA (or PKG-INFO) through descriptors: no link in the layer is followed."""
    pins = set()
    opened = [os.open(layer, _DIR_FLAGS)]
    try:
        for part in site_parts():
            opened.append(os.open(part, _DIR_FLAGS, dir_fd=opened[-1]))
        site = opened[-1]
        with os.scandir(site) as entries:
            names = sorted(e.name for e in entries)
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=site)
                except OSError:
                    text = read_head(site, name) if name.endswith(".egg-info") else b""
                else:
                    try:
                        text = read_head(fd, "METADATA" if name.endswith(".dist-info") else "PKG-INFO")
                    finally:
                        os.close(fd)
                pin = _pin(text)
                if pin:
                    pins.add(pin)
    finally:
        for fd in reversed(opened):
            os.close(fd)
    return sorted(pins)


def _pin(metadata: bytes) -> str:
    found: dict[str, str] = {}
    for raw in metadata.decode("utf-8", "replace").splitlines():
        if not raw.strip():
            break
        key, sep, value = raw.partition(":")
        if sep and key.strip().lower() in ("name", "version") and key.strip().lower() not in found:
            found[key.strip().lower()] = value.strip()
    if not found.get("name") or not found.get("version"):
        return ""
    name = re.sub(r"[-_.]+", "-", found["name"]).lower()
    return f"{name}=={found['version']}"[:200]
