"""Link secrets as a host reads them: by key, from a folder of its own, never from a path someone else names.

A lattice link names each secret by a KEY (``--secret NAME=KEY``); every host maps a key to the file
``KEY`` in its secrets folder (``HOME/secrets``, or ``$WORLDRT_SECRETS_DIR``). Whatever the key or the file
is, reading it never blocks, never follows a symbolic link, never opens a device and never takes more than
MAX_SECRET_BYTES: the name is looked up with ``O_PATH|O_NOFOLLOW`` relative to the folder, and only a
regular file, owned by root or this process's user and not writable by others, is opened to be read. The
text must be UTF-8 and at least MIN_SECRET_BYTES long. Anything else is a SecretError that says what to fix;
a key with no file on this host is SecretMissing.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from worldrt.host.routing import MAX_SECRET_BYTES, LinkError, check_secret

SECRETS_DIR_ENV = "WORLDRT_SECRETS_DIR"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"), (stat.S_ISLNK, "symbolic link"))


class SecretError(LinkError):
    """A secret this host will not use (its message says which file and what to change)."""


class SecretMissing(SecretError):
    """No file for the key on this host."""


def check_key(key: str) -> str:
    """``key`` when it can name a file in a secrets folder (no path, no dot first); LinkError otherwise."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise LinkError(f"secret key {key!r} must be 1-128 letters, digits, '-', '_' or '.', not starting with a dot "
                        f"or a dash (it names a file in each host's secrets folder, never a path)")
    return key


def secrets_dir(home: Path) -> Path:
    """This host's secrets folder: ``$WORLDRT_SECRETS_DIR``, else ``HOME/secrets``."""
    configured = os.environ.get(SECRETS_DIR_ENV)
    return Path(configured) if configured else home / "secrets"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _read_regular(fd: int, where: str) -> bytes:
    """The bytes of the regular file at ``fd`` (an O_PATH descriptor), read through a descriptor of its own."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(f"{where} is a {_kind(st.st_mode)}, not a regular file; put the secret in a regular file")
    if st.st_uid not in (0, os.geteuid()):
        raise SecretError(f"{where} belongs to uid {st.st_uid}; a secret file must belong to root or to uid "
                          f"{os.geteuid()}, who runs this host")
    if st.st_mode & stat.S_IWOTH:
        raise SecretError(f"{where} is writable by anyone; chmod o-w (better 600) it")
    if st.st_size > MAX_SECRET_BYTES:
        raise SecretError(f"{where} is {st.st_size} bytes; a secret file holds at most {MAX_SECRET_BYTES}")
    # Reopening the O_PATH descriptor opens the very inode just checked, and nothing but a regular file.
    reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        again = os.fstat(reader)
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(again.st_mode):
            raise SecretError(f"{where} changed while it was read; try again")
        chunks, size = [], 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(reader, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(reader)
    if size > MAX_SECRET_BYTES:
        raise SecretError(f"{where} grew past {MAX_SECRET_BYTES} bytes while it was read")
    return b"".join(chunks)


def _open_path(name: str | Path, where: str, *, dir_fd: int | None, follow: bool) -> int:
    flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise SecretMissing(f"{where} does not exist") from None
    except OSError as exc:
        raise SecretError(f"{where} cannot be opened ({exc.strerror})") from None


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode().rstrip("\r\n")
    except UnicodeDecodeError:
        raise SecretError(f"{where} is not UTF-8 text") from None


def read_secret(directory: Path, key: str, *, link_id: str = "", name: str = "") -> str:
    """The secret ``key`` names in ``directory`` (SecretMissing when there is no such file, SecretError when it is
    not one this host reads, or too short)."""
    check_key(key)
    where = f"secret file {directory / key}"
    try:
        folder = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SecretMissing(f"{where} does not exist (no secrets folder {directory})") from None
    except OSError as exc:
        raise SecretError(f"the secrets folder {directory} cannot be opened ({exc.strerror})") from None
    try:
        # O_PATH|O_NOFOLLOW opens a symbolic link itself (never its target), which then is no regular file.
        fd = _open_path(key, where, dir_fd=folder, follow=False)
        try:
            text = _text(_read_regular(fd, where), where)
        finally:
            os.close(fd)
    finally:
        os.close(folder)
    check_secret(link_id or "?", name or key, text)
    return text


def read_secret_file(path: Path) -> str:
    """The secret in a file the operator names on the command line (``--secret-file KEY=PATH``): the same checks,
    except that a symbolic link the operator made is followed."""
    where = f"secret file {path}"
    fd = _open_path(path, where, dir_fd=None, follow=True)
    try:
        return _text(_read_regular(fd, where), where)
    finally:
        os.close(fd)
