"""Image builds: pip installs from a package index in a sandbox of their own, never as the daemon.

The build sandbox has a network namespace of its own whose only way out is the daemon's proxy to the
build's package index (``_index_proxy``), and sees only system directories, the base interpreter (its
site-packages hidden), pip (read-only) and the image folder, a tmpfs of the build's size limit. Its
script drops to a uid of its own before pip runs, then writes the finished folder to its stdout as a
stream of entries (``_layers.PACKER``). The daemon reads that stream as data and makes each entry
itself, relative to a descriptor of a staging folder of its own, never following a link, and refuses
what an image may not hold (``_layers``: links out, devices, names past its caps); it never lets tarfile
or a path walk touch what the sandbox made. The layer is named by the digest of what the daemon wrote,
and its name by the rules of ``_images`` (a name is its owner's). A build that fails, runs past its time
or its size leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from worldrt import errors as err
from worldrt.providers.sandbox import _bwrap, _index_proxy, _layers, _seccomp
from worldrt.providers.sandbox._images import (
    OPERATOR,
    ImageInfo,
    ImageStore,
    check_name,
    check_owner,
    content_digest,
    digest_of,
    installed,
    interpreter_links,
    make_skeleton,
    python_version,
)
from worldrt.providers.sandbox._uids import ALLOCATOR
from worldrt.providers.sandbox._workspace import NewFile

DEFAULT_TIMEOUT_S = 600
DEFAULT_MAX_MB = 2048
MAX_REQUIREMENTS = 200
PYPI = "https://pypi.org/simple"
# The machine's trust store, which pip's own bundle may lack (an operator's TLS-inspecting proxy).
SYSTEM_CERTS = "/etc/ssl/certs/ca-certificates.crt"
_NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf", "/etc/ssl",
                  "/etc/ca-certificates", "/etc/protocols", "/etc/services")
_UNREACHABLE = ("Failed to establish a new connection", "Connection refused", "Network is unreachable",
                "Name or service not known", "Temporary failure in name resolution", "No route to host",
                "ConnectTimeoutError", "Max retries exceeded", "Could not fetch URL", "connection error")
_FULL = ("No space left on device", "File too large", "Disk quota exceeded")
_MISSING = re.compile(r"No matching distribution found for (\S+)")
_STAGES = (("Collecting", "resolving", 0.1), ("Downloading", "downloading", 0.3),
           ("Installing collected packages", "installing", 0.6), ("Successfully installed", "installed", 0.8))

Progress = Callable[[str, str, float], None]
# The longest line of the build's stderr the daemon reads at once (a longer one comes in pieces).
_LINE_BYTES = 4096

# Runs inside the build sandbox with the base interpreter (-I -S): make the venv shape, drop to the
# build's uid, run pip; then _layers.PACKER streams the result on stdout.
_SCRIPT = r'''
import json, os, resource, subprocess, sys
args = json.loads(sys.argv[1])
layer = "/opt/python-env"
uid = args["uid"]
os.chown(layer, uid, uid)
os.umask(0o022)
os.environ["SOURCE_DATE_EPOCH"] = "315532800"  # pip's .pyc files by hash, not mtime: a request's layers are alike
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
for which, value in ((resource.RLIMIT_FSIZE, args["max_bytes"]), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(which, (value, value))
os.makedirs(layer + "/bin")
os.makedirs(layer + "/" + args["site"])
for name in args["links"]:
    os.symlink(args["exe"], layer + "/bin/" + name)
with open(layer + "/pyvenv.cfg", "w") as f:
    f.write(args["cfg"])
with open("/tmp/requirements.txt", "w") as f:
    f.write("\n".join(args["requirements"]) + "\n")
print("@@worldrt resolving", file=sys.stderr, flush=True)
command = [layer + "/bin/python", "/opt/pip/pip", "install", "--no-cache-dir", "--disable-pip-version-check",
           "--no-input", "--progress-bar", "off", "--no-warn-script-location", "--retries", "1",
           "--timeout", "20", "--index-url", args["index_url"], "-r", "/tmp/requirements.txt"]
if args["cert"]:
    command += ["--cert", args["cert"]]
    os.environ["PIP_CERT"] = args["cert"]  # pip's install of build dependencies gets no --cert, only the env
code = subprocess.call(command, stdout=2, stderr=2, stdin=subprocess.DEVNULL)
if code:
    sys.exit(code)
''' + _layers.PACKER


@dataclass(frozen=True)
class BuildSpec:
    name: str
    requirements: tuple[str, ...]
    files: tuple[NewFile, ...] = ()
    index_url: str = ""
    timeout_s: int = DEFAULT_TIMEOUT_S
    max_bytes: int = DEFAULT_MAX_MB * 1024 * 1024
    # Who binds the name (x-worldrt-owner), and whether the build may move a name it owns to a new image.
    owner: str = OPERATOR
    replace: bool = False

    @property
    def index(self) -> str:
        return self.index_url or PYPI

    def file_hashes(self) -> dict[str, str]:
        return {f.path: hashlib.sha256(f.data).hexdigest() for f in self.files}

    def key(self) -> str:
        """What makes two build requests the same, so a later one reuses the first one's layer: the whole
        request (Python, requirements, index, files) and who asks, so another index's or another owner's
        build never stands in for it. Version 2: keys of builds named by ``name==version`` are not reused."""
        return digest_of({"v": 2, "python": python_version(), "requirements": sorted(self.requirements),
                          "index": self.index, "files": self.file_hashes(), "owner": self.owner})


def requirement_lines(pip: list[str], requirements_text: str) -> tuple[str, ...]:
    """The requirements of a build: ``pip`` items and the lines of a requirements file, checked for what a
    build from an index can take (no options, paths or URLs, which would reach outside the build)."""
    lines = [*pip]
    for raw in requirements_text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    out = []
    for line in (item.strip() for item in lines):
        if not line:
            continue
        if line.startswith("-") or "://" in line or "/" in line.split(";", 1)[0] or "@" in line.split(";", 1)[0]:
            raise err.InvalidArgument(f"requirement {line!r} is not a package from the index: options, paths and "
                                      f"URLs are not taken (give names and versions, like numpy==2.1.0)")
        if len(line) > 200 or "\n" in line:
            raise err.InvalidArgument(f"requirement {line[:40]!r}… is too long")
        out.append(line)
    if len(out) > MAX_REQUIREMENTS:
        raise err.InvalidArgument(f"{len(out)} requirements, above the {MAX_REQUIREMENTS} one build takes")
    return tuple(sorted(set(out)))


def check_files(files: list[NewFile], max_bytes: int) -> None:
    total = 0
    for f in files:
        parts = f.path.split("/")
        if f.path.startswith("/") or ".." in parts or not f.path or any(p in ("", ".") for p in parts):
            raise err.InvalidArgument(f"image file path {f.path!r} must be relative, without '..' or empty parts")
        total += len(f.data)
    if total > max_bytes:
        raise err.ResourceExhausted(f"the image's files are {total} bytes, above the build's size limit")


def _certs() -> str:
    """The CA bundle pip checks the index with inside: the daemon's PIP_CERT or the system's, when it is one
    the build sandbox sees (under /etc/ssl or /usr)."""
    for path in (os.environ.get("PIP_CERT", ""), SYSTEM_CERTS):
        if path and os.path.isfile(path) and path.startswith(("/etc/ssl/", "/usr/")):
            return path
    return ""


def _pip_dir() -> Path:
    spec = importlib.util.find_spec("pip")
    if spec is None or spec.origin is None:
        raise err.FailedPrecondition("pip is not installed in the daemon's environment, so images cannot be built "
                                     "(python -m ensurepip)")
    return Path(spec.origin).parent


def _command(label: str, pip_dir: Path, script_fd: int, seccomp_fd: int, layer_bytes: int, args: str) -> list[str]:
    argv = [label, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "builder", "--clearenv", "--proc", "/proc", "--dev", "/dev",
            "--perms", "0755", "--dir", "/etc", "--perms", "0755", "--dir", "/opt"]
    for path in _bwrap.SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in (*_bwrap.ETC_FILES, *_NETWORK_FILES):
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for source, target in _bwrap.interpreter():
        argv += _bwrap.parents(target) + ["--ro-bind", source, target]
    for path in _bwrap.hidden_site_dirs():
        argv += ["--perms", "0555", "--tmpfs", path, "--remount-ro", path]
    argv += ["--perms", "0755", "--size", str(layer_bytes), "--tmpfs", _bwrap.ENV_MOUNT,
             "--perms", "1777", "--size", str(256 * 1024 * 1024), "--tmpfs", "/tmp",
             "--perms", "0755", "--dir", "/opt/pip", "--ro-bind", str(pip_dir), "/opt/pip/pip",
             "--perms", "0444", "--ro-bind-data", str(script_fd), "/opt/build.py",
             "--seccomp", str(seccomp_fd), "--chdir", "/tmp",
             "--setenv", "PATH", _bwrap.SANDBOX_ENV_PATH, "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
             "--", _bwrap.base_interpreter(), "-I", "-S", "/opt/build.py", args]
    return argv


@dataclass
class _Run:
    tail: list[str] = field(default_factory=list)
    timed_out: bool = False


def _watch_stderr(stream: IO[bytes], run: _Run, progress: Progress) -> None:
    fraction = 0.05
    for raw in iter(lambda: stream.readline(_LINE_BYTES), b""):
        line = raw.decode("utf-8", "replace").rstrip()[:500]
        if not line:
            continue
        if line.startswith("@@worldrt "):
            stage = line.split(" ", 1)[1]
            fraction = max(fraction, 0.9 if stage == "packing" else 0.05)
            progress(stage, stage, fraction)
            continue
        run.tail = (run.tail + [line])[-40:]
        for prefix, stage, share in _STAGES:
            if line.startswith(prefix):
                fraction = max(fraction, share)
                progress(stage, line, fraction)
                break


def _failure(run: _Run, spec: BuildSpec, code: int) -> err.WorldError:
    text = "\n".join(run.tail)
    last = " | ".join(line for line in run.tail[-6:] if line.strip())[:1200]
    if run.timed_out:
        return err.DeadlineExceeded(f"the build of {spec.name} ran past its {spec.timeout_s} s and was stopped")
    if any(marker in text for marker in _FULL):
        return err.ResourceExhausted(f"the build of {spec.name} passed its size limit of "
                                     f"{spec.max_bytes // (1024 * 1024)} MiB: {last}")
    if any(marker in text for marker in _UNREACHABLE):
        return err.Unavailable(f"the package index {spec.index} could not be reached from the build: {last}")
    missing = _MISSING.search(text)
    if missing:
        return err.NotFound(f"no package on {spec.index} matches {missing.group(1)}: check its name and version")
    return err.FailedPrecondition(f"pip could not install the image {spec.name} (exit {code}): {last}")


def build(store: ImageStore, spec: BuildSpec, progress: Progress) -> ImageInfo:
    """Build (or find built) the image of ``spec``, name it, and return it. Blocking: call on a thread.
    A name that names another image already is refused before anything runs, unless its owner replaces it."""
    check_name(spec.name)
    check_owner(spec.owner)
    known = store.cached(spec.key())
    store.check_bind(spec.name, spec.owner, spec.replace, known.digest if known else None)
    if known is not None:
        with store.locked():
            store.bind(spec.name, known.digest, spec.owner, spec.index, spec.replace)
        progress("cached", f"the same request was built before: {known.digest[:12]}", 1.0)
        return store.resolve(spec.name)
    started = time.monotonic()
    pip_dir = _pip_dir()
    uid = ALLOCATOR.take()
    staging = store.new_staging()
    network = _index_proxy.IndexProxy(spec.index, uid, byte_cap=2 * spec.max_bytes + (256 << 20))
    try:
        exe = _bwrap.base_interpreter()
        major, minor = sys.version_info.major, sys.version_info.minor
        args = json.dumps({"uid": uid, "max_bytes": spec.max_bytes, "exe": exe,
                           "site": f"lib/python{major}.{minor}/site-packages",
                           "links": list(interpreter_links()),
                           "cfg": f"home = {os.path.dirname(exe)}\ninclude-system-site-packages = false\n"
                                  f"version = {python_version()}\n",
                           "requirements": list(spec.requirements), "index_url": spec.index,
                           "cert": _certs()})
        script = _bwrap.memfd("build.py", _SCRIPT.encode())
        seccomp = _bwrap.memfd("build.bpf", _seccomp.sandbox_filter())
        try:
            proc = subprocess.Popen(
                network.confine(_command(f"bwrap[worldrt {store.root} build {spec.name}]", pip_dir, script, seccomp,
                                         spec.max_bytes, args)),
                executable=_bwrap.bwrap_path(), pass_fds=[script, seccomp, *network.fds], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        finally:
            os.close(script)
            os.close(seccomp)
        run = _Run()

        def kill() -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def stop() -> None:
            run.timed_out = True
            kill()

        timer = threading.Timer(spec.timeout_s, stop)
        timer.start()
        assert proc.stdout is not None and proc.stderr is not None
        watcher = threading.Thread(target=_watch_stderr, args=(proc.stderr, run, progress), daemon=True)
        watcher.start()
        unpack_error: BaseException | None = None
        unpacked: _layers.Unpacked | None = None
        try:
            make_skeleton(staging)  # first: the stream cannot replace the image's own folders and links
            try:
                unpacked = _layers.unpack(proc.stdout, staging, spec.max_bytes)
            except _layers.StreamCut as exc:
                unpack_error = exc  # the packer stopped: pip's exit says why
            except (err.WorldError, OSError) as exc:
                unpack_error = exc
                kill()
            proc.stdout.close()  # a sandbox that writes past its end record gets EPIPE, not a reader
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            watcher.join(5)
            proc.stdout.close()
            proc.stderr.close()
        if isinstance(unpack_error, (err.ResourceExhausted, _layers.LayerRefused)):
            raise type(unpack_error)(f"the build of {spec.name} made an image this daemon does not take: "
                                     f"{unpack_error.message}")
        if isinstance(unpack_error, OSError):
            kind = err.ResourceExhausted if unpack_error.errno in (errno.ENOSPC, errno.EDQUOT) else err.FailedPrecondition
            raise kind(f"the daemon could not write the image {spec.name}: {unpack_error}")
        if code != 0 or run.timed_out:
            run.tail += network.notes()  # what the build's network refused or could not reach
            raise network.failure(spec.name) or _failure(run, spec, code)
        if unpack_error is not None or unpacked is None:
            raise err.FailedPrecondition(f"the build of {spec.name} sent no usable image: {unpack_error}")
        for f in spec.files:
            target = staging / "files" / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.data)
            os.chmod(target, (f.mode & 0o755) | 0o444 if f.mode else 0o644)
        packages = installed(staging)
        info = ImageInfo(content_digest(python_version(), unpacked.digest, spec.file_hashes()), python_version(),
                         packages, requested=list(spec.requirements), files=spec.file_hashes(),
                         size_bytes=unpacked.size_bytes, source=f"pip from {spec.index}",
                         build_s=round(time.monotonic() - started, 3), index_url=spec.index,
                         layer_digest=unpacked.digest)
        progress("done", f"{len(packages)} packages", 1.0)
        return store.commit(staging, info, key=spec.key(), name=spec.name, owner=spec.owner, replace=spec.replace,
                            checked=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        network.stop()
        ALLOCATOR.release(uid)
