"""Files only the host's user may read: its state folder (0700) and the registry's files (0600).

DuckDB creates and deletes its ``.wal`` by itself (at every checkpoint), so the registry holds
``private_umask()`` around its DuckDB calls: the umask is the process's, so for those moments every
file the process creates is private too. Children are started with ``NORMAL_UMASK``, the one the
process had when this module was imported, so they never inherit that moment's umask.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NORMAL_UMASK = os.umask(0o077)
os.umask(NORMAL_UMASK)
_PRIVATE_UMASK = NORMAL_UMASK | 0o077
_lock = threading.Lock()
_holders = 0


@contextmanager
def private_umask() -> Iterator[None]:
    """While inside, files and folders this process creates are readable by its user only."""
    global _holders
    with _lock:
        if _holders == 0:
            os.umask(_PRIVATE_UMASK)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                os.umask(NORMAL_UMASK)


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) if needed; a folder made here is 0700, one that existed is left."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return path


def make_private(*paths: Path) -> None:
    """chmod 0600 each of ``paths`` that exists (files an older version left readable by others)."""
    for path in paths:
        try:
            os.chmod(path, 0o600)
        except FileNotFoundError:
            pass
