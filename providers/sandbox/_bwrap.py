"""The bubblewrap command line that builds one sandbox."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent
AGENT_MOUNT = "/opt/worldrt"
WORKSPACE_MOUNT = "/workspace"
# Only what programs need to run: no /home, /root, /etc/shadow or host sockets are visible inside.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/passwd", "/etc/group", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime",
    "/etc/nsswitch.conf", "/etc/mime.types", "/etc/ssl/certs", "/etc/ssl/openssl.cnf",
)
# /tmp is private to the sandbox and lives in memory, so it is capped.
TMP_BYTES = 256 * 1024 * 1024
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def bwrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise RuntimeError("bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap")
    return path


def python_roots() -> list[str]:
    """Directories the sandboxed interpreter needs: the running Python, its base install and site-packages."""
    roots = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(r for r in roots if r and not any(r != o and r.startswith(o + "/") for o in roots))


def _parents(path: str) -> list[str]:
    """Create the ancestors of a bind target traversable (bwrap would make them 0700 as root)."""
    out: list[str] = []
    parts = Path(path).parts[1:-1]
    for depth in range(1, len(parts) + 1):
        out += ["--perms", "0755", "--dir", "/" + "/".join(parts[:depth])]
    return out


def command(workspace_root: Path, channel_fd: int, uid: int, gid: int, nproc: int) -> list[str]:
    """argv that starts the agent as the zygote of a new sandbox whose workspace root is ``workspace_root``."""
    argv = [bwrap_path(), "--die-with-parent", "--new-session",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--clearenv",
            "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
            "--perms", "0755", "--dir", "/etc", "--perms", "0755", "--dir", "/etc/ssl",
            "--perms", "0755", "--dir", "/opt"]
    if os.geteuid() != 0:
        # Unprivileged daemons get a user namespace; as root the agent drops to ``uid`` itself.
        argv += ["--unshare-user", "--uid", str(os.getuid()), "--gid", str(os.getgid())]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in _ETC_FILES:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for root in python_roots():
        if not root.startswith("/usr/"):
            argv += _parents(root) + ["--ro-bind", root, root]
    argv += ["--ro-bind", str(AGENT_DIR), AGENT_MOUNT,
             "--bind", str(workspace_root), WORKSPACE_MOUNT,
             "--chdir", WORKSPACE_MOUNT,
             "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", WORKSPACE_MOUNT,
             "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
             "--setenv", "PYTHONUNBUFFERED", "1", "--setenv", "OPENBLAS_NUM_THREADS", "1",
             "--", os.path.realpath(sys.executable) if sys.prefix == sys.base_prefix else sys.executable,
             f"{AGENT_MOUNT}/agent.py", str(channel_fd), str(uid), str(gid), str(nproc)]
    return argv
