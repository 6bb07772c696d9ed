"""E2B's paths as worldrt's: E2B's working directory ``/home/user`` is the instance's workspace.

Invariants: a path the SDK sends becomes a workspace-relative path (what the host's file operations take)
or is refused with a sentence saying why; ``..`` never climbs out of the workspace (the provider resolves
the path again in the sandbox and refuses an escape too); a path the host answers (relative to the
workspace) is shown under ``/home/user``.
"""

from __future__ import annotations

import posixpath

from worldrt.errors import InvalidArgument

HOME = "/home/user"
_ROOTS = (HOME, "/workspace")
_WORKSPACE = "/workspace"


def to_workspace(path: str) -> str:
    """``/home/user/a/b`` (or ``a/b``, relative to it) as ``a/b``; ``""`` for the workspace itself."""
    if "\0" in path:
        raise InvalidArgument("a path must not contain NUL characters")
    full = posixpath.normpath(posixpath.join(HOME, path or "."))
    if full.startswith("//"):
        full = full[1:]
    for root in _ROOTS:
        if full == root:
            return ""
        if full.startswith(root + "/"):
            return full[len(root) + 1:]
    raise InvalidArgument(f"{path!r} is outside {HOME}: a worldrt sandbox serves files only under its working "
                          f"directory {HOME} (the instance's workspace); put the file there")


def to_e2b(workspace_path: str) -> str:
    """A workspace-relative path the host answered, as the SDK sees it (under ``/home/user``)."""
    return posixpath.join(HOME, workspace_path) if workspace_path not in ("", ".") else HOME


def to_sandbox_cwd(path: str | None) -> str:
    """A process's working directory inside the sandbox (``/workspace/...``); the workspace when none is given."""
    if not path:
        return _WORKSPACE
    relative = to_workspace(path)
    return posixpath.join(_WORKSPACE, relative) if relative else _WORKSPACE
