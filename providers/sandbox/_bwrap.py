"""The bubblewrap command line that builds one sandbox.

Only system directories, the base interpreter and the sandbox's image are bound in (read-only); the
base install's own site-packages are hidden, so a sandbox imports the standard library and its image's
packages only. The agent's files and its seccomp filters are copied in from memory, so no path of the
daemon's state appears inside. A member's
/workspace, /tmp and /dev/shm are a tmpfs the zygote mounts when it spawns the member.
"""

from __future__ import annotations

import functools
import importlib.util
import marshal
import os
import shutil
import site
import sys
import sysconfig
import types
from pathlib import Path

from worldrt.errors import FailedPrecondition
from worldrt.providers.sandbox import _seccomp

AGENT_DIR = Path(__file__).resolve().parent
AGENT_MOUNT = "/opt/worldrt"
AGENT_FILES = ("agent.py", "_wire.py", "_linux.py", "_procman.py", "_fsops.py", "_watcher.py")
# The agent runs as ``__main__`` from its module, as ``python -m`` runs one, so its bytecode is loaded (a script's
# never is) and the sandbox sees the same process as before: its folder first on sys.path, the agent as __main__.
AGENT_MAIN = (f"import runpy, sys; sys.path[0] = {AGENT_MOUNT!r}; "
              f"runpy.run_module('agent', run_name='__main__', alter_sys=True)")
# Only what programs need to run: no /home, /root, /etc/shadow or host sockets are visible inside.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "/etc/passwd", "/etc/group", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
    "/etc/localtime", "/etc/nsswitch.conf", "/etc/mime.types", "/etc/ssl/certs", "/etc/ssl/openssl.cnf",
)
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# Each member gets its own of these (on its disk): nothing of the host's under them is seen inside.
MEMBER_PRIVATE_DIRS = ("/tmp", "/workspace", "/dev/shm")
# Where a sandbox sees its image (a venv-shaped layer, see _images).
ENV_MOUNT = "/opt/python-env"
SANDBOX_ENV_PATH = f"{ENV_MOUNT}/bin:{SANDBOX_PATH}"


def bwrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise FailedPrecondition("bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap")
    return path


def _usable(root: str, *, at_own_path: bool = True) -> str:
    if at_own_path and any(root == private or root.startswith(private + "/") for private in MEMBER_PRIVATE_DIRS):
        raise FailedPrecondition(
            f"this Python's base install lives in {root}, under a directory each sandbox replaces with its own "
            f"({', '.join(MEMBER_PRIVATE_DIRS)}), so sandboxes could not run it; use a Python installed elsewhere")
    mode = os.stat(root).st_mode
    if mode & 0o005 != 0o005:
        raise FailedPrecondition(
            f"this Python lives in {root}, which other users cannot read (mode {mode & 0o777:o}), so sandboxes, "
            f"which run as uids of their own, could not import from it; make it readable (chmod o+rx {root}) or "
            f"install worldrt elsewhere")
    return root


def interpreter() -> list[tuple[str, str]]:
    """The (host path, sandbox path) binds a sandbox needs to run this Python's base interpreter and
    standard library (a venv's own folder is never bound: the image stands in its place). The base
    install keeps its path, which an image's ``pyvenv.cfg`` names; under /usr it is a system directory,
    mounted already."""
    venv = sys.prefix if sys.prefix != sys.base_prefix else None
    bases = {root for root in (sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)))
             if venv is None or not (root == venv or root.startswith(venv + "/"))}  # a venv's copied binary
    return [(_usable(root), root) for root in sorted(bases)
            if not root.startswith("/usr/") and not any(root != o and root.startswith(o + "/") for o in bases)]


def base_interpreter() -> str:
    """The base interpreter's binary at its own path (bound by ``interpreter``), outside any venv: a venv
    may hold a copy of it, which sandboxes do not see."""
    venv = sys.prefix if sys.prefix != sys.base_prefix else None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (getattr(sys, "_base_executable", ""), os.path.join(sys.base_prefix, "bin", version),
                      os.path.join(sys.base_prefix, "bin", "python3"), sys.executable):
        real = os.path.realpath(candidate) if candidate else ""
        if real and os.path.isfile(real) and not (venv and (real == venv or real.startswith(venv + "/"))):
            return real
    return os.path.realpath(sys.executable)


def executable() -> str:
    """The interpreter inside: the image's link to the base binary."""
    return f"{ENV_MOUNT}/bin/python{sys.version_info.major}.{sys.version_info.minor}"


def hidden_site_dirs() -> list[str]:
    """The base install's site-packages (and a Debian Python's dist-packages): covered by an empty
    read-only folder inside, so nothing installed there is seen."""
    found = set(site.getsitepackages([sys.base_prefix]))
    for scheme in ("posix_prefix", "posix_local", "deb_system"):
        if scheme in sysconfig.get_scheme_names():
            paths = sysconfig.get_paths(scheme, vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
            found.update((paths["purelib"], paths["platlib"]))
    found.update(("/usr/lib/python3/dist-packages", f"/usr/local/lib/python3.{sys.version_info.minor}/dist-packages"))
    return sorted(p for p in found if os.path.isdir(p) and not os.path.islink(p))


def python_binds(layer: str) -> list[str]:
    """bwrap arguments that make a sandbox's Python: the base install, its site-packages hidden, and the
    image layer at ENV_MOUNT."""
    argv: list[str] = []
    for source, target in interpreter():
        argv += parents(target) + ["--ro-bind", source, target]
    for path in hidden_site_dirs():
        argv += ["--perms", "0555", "--tmpfs", path, "--remount-ro", path]
    return argv + ["--ro-bind", _usable(layer, at_own_path=False), ENV_MOUNT]


def parents(path: str) -> list[str]:
    """Create the ancestors of a bind target traversable (bwrap would make them 0700 as root)."""
    out: list[str] = []
    parts = Path(path).parts[1:-1]
    for depth in range(1, len(parts) + 1):
        out += ["--perms", "0755", "--dir", "/" + "/".join(parts[:depth])]
    return out


def memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@functools.lru_cache(maxsize=2 * len(AGENT_FILES))
def _bytecode(path: str, source: bytes, installed: str | None = None) -> bytes:
    """An agent module compiled as a checked-hash .pyc (PEP 552) for the interpreter inside, which loads it
    instead of compiling the agent at every sandbox start (about 17 ms of CPU each) and compiles the source
    instead when the hash differs or the interpreter's magic number is another. The code is the one the
    install compiled beside ``installed`` (compileall, pip) when that was compiled from this very source:
    compiling the agent took each daemon's start about 30 ms of CPU."""
    code = _installed_code(installed, source) if installed else None
    if code is None:
        code = compile(source, path, "exec", dont_inherit=True)
    return importlib.util.MAGIC_NUMBER + (0b11).to_bytes(4, "little") + importlib.util.source_hash(source) + \
        marshal.dumps(_located(code, path))


def _installed_code(source_path: str, source: bytes) -> types.CodeType | None:
    """The code in ``source_path``'s cached bytecode if it is this interpreter's and was compiled from
    ``source`` (by its hash, or by the source file's mtime and size as the import system checks them)."""
    try:
        with open(importlib.util.cache_from_source(source_path), "rb") as f:
            data = f.read()
        st = os.stat(source_path)
    except (OSError, NotImplementedError, ValueError):
        return None
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags = int.from_bytes(data[4:8], "little")
    if flags & 0b1:
        fresh = data[8:16] == importlib.util.source_hash(source)
    else:
        fresh = (flags == 0 and len(source) == st.st_size
                 and int.from_bytes(data[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                 and int.from_bytes(data[12:16], "little") == st.st_size & 0xFFFFFFFF)
    if not fresh:
        return None
    try:
        code = marshal.loads(data[16:])
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, types.CodeType) else None


def _located(code: types.CodeType, path: str) -> types.CodeType:
    """``code`` and the code nested in it named for ``path``: no path of the host's reaches the sandbox."""
    consts = tuple(_located(c, path) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=path, co_consts=consts)


def agent_fds() -> dict[str, int]:
    """Fresh descriptors holding what is copied into the sandbox: each is read once by bwrap."""
    fds = {}
    for name in AGENT_FILES:
        path, installed = f"{AGENT_MOUNT}/{name}", AGENT_DIR / name
        source = installed.read_bytes()
        fds[path] = memfd(name, source)
        fds[importlib.util.cache_from_source(path)] = memfd(f"{name}c", _bytecode(path, source, str(installed)))
    fds[f"{AGENT_MOUNT}/member.bpf"] = memfd("member.bpf", _seccomp.member_filter())
    fds["seccomp"] = memfd("sandbox.bpf", _seccomp.sandbox_filter())
    return fds


def command(label: str, channel_fd: int, nproc: int, files: dict[str, int], layer: str) -> list[str]:
    """argv that starts the agent as the zygote of a new sandbox running from the image ``layer``.
    ``label`` is bwrap's argv[0], so a sandbox can be told apart in the host's process list; it does
    not reach inside."""
    argv = [label, "--die-with-parent", "--new-session",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--clearenv",
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "0755", "--dir", "/etc", "--perms", "0755", "--dir", "/etc/ssl",
            "--perms", "0755", "--dir", "/opt", "--perms", "0755", "--dir", AGENT_MOUNT,
            "--perms", "0755", "--dir", "/.disk", "--perms", "0755", "--dir", "/workspace",
            "--perms", "1777", "--dir", "/tmp"]
    if os.geteuid() != 0:
        raise PermissionError("the sandbox engine runs as root: it gives each member a uid, cgroups and namespaces "
                              "of its own (run the provider daemon as root)")
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in ETC_FILES:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += python_binds(layer)
    for dest, fd in files.items():
        if dest != "seccomp":
            argv += ["--perms", "0444", "--ro-bind-data", str(fd), dest]
    argv += ["--seccomp", str(files["seccomp"]),
             "--chdir", "/",
             "--setenv", "PATH", SANDBOX_ENV_PATH, "--setenv", "HOME", "/workspace",
             "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
             "--setenv", "PYTHONUNBUFFERED", "1", "--setenv", "OPENBLAS_NUM_THREADS", "1",
             "--", executable(), "-c", AGENT_MAIN, str(channel_fd), str(nproc)]
    return argv
