"""The program that runs inside a sandbox: a zygote that forks members, which fork snapshots and branches.

Started by the daemon inside bubblewrap as ``python agent.py CHANNEL_FD NPROC``, as root of the sandbox.
Roles:

* zygote: root of the sandbox; never runs user code. ``spawn`` forks the sandbox's one member (its
  workspace, /tmp and /dev/shm on a tmpfs of its quota), which drops to the uid the daemon gave it and
  takes the member seccomp filter before it answers. ``nsprep`` makes sets of namespaces (user, mount,
  network, ipc, each with a fresh uid and a fresh disk) for a lineage's future branches.
* instance: runs code in a persistent namespace (``exec``), archives its disk for a snapshot
  (``archive``), restores one (``restore``), and forks frozen copies of itself (``snapshot``).
* snapshot: a frozen copy of an instance; ``branch`` forks children of it, each of which enters one of
  the namespace sets the daemon hands it, takes its fresh uid, restores the snapshot's disk and becomes
  a live instance that shares nothing with its parent or siblings.

Every forked process says hello with SCM_CREDENTIALS so the daemon learns its pid. Standard library
only: this file is executed by path inside the sandbox.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the signal module's C core, without a stub (see _handle)
import ast
import base64
import builtins
import contextlib
import errno
import io
import json
import os
import random
import resource
import select
import selectors
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import _fsops  # type: ignore[import-not-found]  # the agent runs as a script: its folder is on sys.path
import _linux
import _wire

# Output kept per run: under gRPC's default 4 MiB message limit, so every client can read the result.
MAX_OUTPUT = 2 * 1024 * 1024
# The largest result value (its JSON) and error text a run may return.
MAX_VALUE = 1024 * 1024
MAX_ERROR = 64 * 1024
OUTPUT_CHUNK = 64 * 1024
# A run asked to collect its output (a unary Execute) returns up to this many characters in its result
# frame, which stays under the daemon's frame limit however the JSON escapes them; past it, it streams.
COLLECT_MAX = 128 * 1024
# Output of an instance's threads between runs kept for its next run (characters); the rest is counted.
HELD_MAX = 8 * 1024
# A snapshot hands its children to the daemon this many at a time, so they come up while it forks on.
STREAM_CHILDREN = 4
FLUSH_AT = 8192
WORKSPACE = "/workspace"
AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
TMP = "/tmp"
SHM = "/dev/shm"
# A member's disk: each folder and its name in an archive.
_DISK = ((WORKSPACE, "workspace"), (TMP, "tmp"), (SHM, "shm"))
_ON_DISK = tuple(folder + "/" for folder, _ in _DISK)
# A snapshot leaves the descriptors its instance held taken: a branch needs this many more of its own.
FREE_DESCRIPTORS = 16
MEMBER_FILTER = "/opt/worldrt/member.bpf"
# A helper that prepares namespaces for a lineage gives up after this long.
NSPREP_TIMEOUT_S = 10.0
INT32 = (-(2**31), 2**31 - 1)


class _State:
    def __init__(self) -> None:
        self.chan: socket.socket
        self.iid = ""
        self.pid = 0
        self.in_user_code = False
        # A run is under way (from its start until its reply is sent): output goes to the daemon now.
        # Output of the instance's threads between runs is held for the next run. The lock orders frames.
        self.running = False
        self.lock = threading.RLock()
        self.held: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.held_size = 0
        self.held_dropped = 0
        self.out_bytes = 0
        # A collecting run's output so far ({"stdout": [...], "stderr": [...]}), None when it streams.
        self.collected: dict[str, list[Any]] | None = None
        # The run asked for its output as bytes (ExecuteRequest.output_bytes).
        self.as_bytes = False
        # The pipe of a run's stdin bytes (ExecuteRequest.stdin), None without them.
        self.stdin_fd: int | None = None
        self.collected_chars = 0
        self.namespace: dict[str, Any] = {}
        self.out_offsets = {1: 0, 2: 0}
        self.cells = 0
        self.member_filter = b""
        self.member_pid = 0
        self.reopen: list[tuple[int, str, int, int]] = []
        self.watchers: list[subprocess.Popen[bytes]] = []


STATE = _State()


class _FrameStream(io.TextIOBase):
    """sys.stdout/sys.stderr of an instance: text goes to the daemon as it is produced."""

    def __init__(self, event: str) -> None:
        self.event = event
        self._buf: list[str] = []
        self._size = 0

    def writable(self) -> bool:
        return True

    @property
    def buffer(self) -> _BinaryStream:
        """sys.stdout.buffer: bytes written as they are (decoded with replacement for text callers)."""
        return _BinaryStream(self)

    def write(self, text: str) -> int:
        if not text:
            return 0
        self._buf.append(text)
        self._size += len(text)
        if self._size >= FLUSH_AT or ("\n" in text and STATE.collected is None):
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._buf:
            return
        text = "".join(self._buf)
        self._buf.clear()
        self._size = 0
        _emit(self.event, text)


class _BinaryStream(io.RawIOBase):
    def __init__(self, text: _FrameStream) -> None:
        self.text = text

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.text.flush()
        raw = bytes(data)
        if raw:
            _emit(self.text.event, raw)
        return len(raw)


def _emit(event: str, data: str | bytes) -> None:
    """Send output to the daemon: text, or bytes when the run asked for them (text encoded as UTF-8)."""
    if STATE.as_bytes and isinstance(data, str):
        text = data
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "replace")
    elif not STATE.as_bytes and isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if os.getpid() != STATE.pid:
        # A process user code forked: the channel belongs to the instance, so write to the captured fds.
        os.write(1 if event == "stdout" else 2, data if isinstance(data, bytes) else data.encode("utf-8", "replace"))
        return
    with STATE.lock:
        if STATE.running:
            _send_output(event, data)
        else:  # a thread of the instance between runs: for the next run, up to HELD_MAX characters
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            room = max(0, HELD_MAX - STATE.held_size)
            if room:
                STATE.held[event].append(text[:room])
                STATE.held_size += min(room, len(text))
            STATE.held_dropped += max(0, len(text) - room)


def _send_held() -> None:
    """What the instance's threads printed since the last run, sent at the start of this one (not counted
    against its output: it is capped apart)."""
    held, dropped = STATE.held, STATE.held_dropped
    STATE.held, STATE.held_size, STATE.held_dropped = {"stdout": [], "stderr": []}, 0, 0
    if dropped:
        held["stderr"].append(f"\n[worldrt: {dropped} more characters printed between runs were dropped]\n")
    for event, parts in held.items():
        if parts:
            text = "".join(parts)
            _send_output(event, text.encode("utf-8", "replace") if STATE.as_bytes else text)
    STATE.out_bytes = 0


def _send_output(event: str, data: str | bytes) -> None:
    room = MAX_OUTPUT - STATE.out_bytes
    if room <= 0:
        return
    if len(data) > room:
        note = "\n[worldrt: output truncated at 2 MiB]\n"
        data = data[:room] + (note.encode() if isinstance(data, bytes) else note)  # type: ignore[operator]
    STATE.out_bytes += len(data)
    if STATE.collected is not None:
        if STATE.collected_chars + len(data) <= COLLECT_MAX:
            STATE.collected[event].append(data)
            STATE.collected_chars += len(data)
            return
        _stream_collected()
    for start in range(0, len(data), OUTPUT_CHUNK):
        _wire.send(STATE.chan, _output_frame(event, data[start:start + OUTPUT_CHUNK]))


def _output_frame(event: str, data: str | bytes) -> dict[str, Any]:
    if isinstance(data, bytes):
        return {"ev": event, "b": base64.b64encode(data).decode()}
    return {"ev": event, "d": data}


def _on_sigint(_signum: int, _frame: Any) -> None:
    if STATE.in_user_code:
        raise KeyboardInterrupt


def _apply_limits(limits: dict[str, int]) -> None:
    pairs = {
        resource.RLIMIT_AS: limits["memory_mb"] * 1024 * 1024,
        resource.RLIMIT_CPU: limits["cpu_s"],
        resource.RLIMIT_FSIZE: limits["file_size_mb"] * 1024 * 1024,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in pairs.items():
        resource.setrlimit(which, (value, value))


def _redirect_fd_output(iid: str) -> None:
    """C-level and subprocess output of Python code lands in per-instance files, read after each cell."""
    for fd, suffix in ((1, "out"), (2, "err")):
        target = os.open(f"{TMP}/.worldrt-{iid}.{suffix}", os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
        STATE.out_offsets[fd] = 0


def _reseed() -> None:
    seed = int.from_bytes(os.urandom(8), "little")
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed % (2**32))


def _handle(signum: int, handler: Any) -> None:
    """signal.signal for a freshly forked child: without its making an enum member of the old handler, which
    costs a fresh fork about 80 µs a call (each object it touches is copied). ``handler`` is a callable,
    _signal.SIG_DFL or _signal.SIG_IGN."""
    _signal.signal(signum, handler)


def _become_live(chan: socket.socket, iid: str, reseed: bool) -> None:
    """Turn a freshly forked (and already isolated) child into a live instance and serve its channel."""
    _handle(signal.SIGCHLD, _signal.SIG_DFL)
    _handle(signal.SIGINT, _on_sigint)
    os.chdir(WORKSPACE)
    os.environ["HOME"] = WORKSPACE
    os.environ["WORLDRT_WORKSPACE"] = WORKSPACE
    os.environ["WORLDRT_INSTANCE_ID"] = iid
    STATE.chan = chan
    STATE.iid = iid
    STATE.pid = os.getpid()
    _redirect_fd_output(iid)
    sys.stdout = _FrameStream("stdout")
    sys.stderr = _FrameStream("stderr")
    if reseed:
        _reseed()
    _serve_instance(chan)
    os._exit(0)


def _serve_instance(chan: socket.socket) -> None:
    while True:
        try:
            msg, fds, _ = _wire.recv(chan)
        except (_wire.ChannelClosed, OSError, ValueError):
            return
        except KeyboardInterrupt:
            continue
        op = msg.get("op") if isinstance(msg, dict) else None
        try:
            if op == "exec":
                stdin_fd = fds[0] if msg.get("stdin") is True and len(fds) == 1 else None
                _close_all(fds if stdin_fd is None else [])
                _exec(chan, msg, stdin_fd)
            elif op == "snapshot" and len(fds) == 1:
                _snapshot(chan, msg, fds[0])
            elif op == "archive" and len(fds) == 1:
                _wire.send(chan, {"ok": True, **_archive_to(fds[0])})
            elif op == "restore" and len(fds) == 1:
                _wire.send(chan, {"ok": True, **_restore_from(fds[0])})
            elif op == "write" and len(fds) == 1:
                _wire.send(chan, _files_guarded(_write_files, msg, fds[0]))
            elif op == "read" and len(fds) == 1:
                _read_file(chan, msg, fds[0])
            elif op == "list":
                _close_all(fds)
                _wire.send(chan, _files_guarded(_list_files, msg, None))
            elif op == "procman":
                _close_all(fds)
                _start_supervisor(chan, str(msg.get("key", "")))
            elif op == "watch":
                _close_all(fds)
                _watch(chan, msg)
            elif op in _FILE_OPS:
                _close_all(fds)
                _wire.send(chan, _files_guarded(_FILE_OPS[op], msg, None))
            elif op == "ping":
                _close_all(fds)
                _wire.send(chan, {"ok": True})
            elif op in ("snapshot", "archive", "restore", "write", "read") and not fds:
                _wire.send(chan, {"error": f"{op} failed: its descriptor did not arrive (does the instance hold every "
                                           f"descriptor RLIMIT_NOFILE allows?)"})
            else:
                _close_all(fds)
                _wire.send(chan, {"error": f"unknown op {op!r} with {len(fds)} descriptor(s)"})
        except KeyboardInterrupt:
            # An interrupt that landed between the end of user code and the reply.
            _wire.send(chan, {"ev": "done", "interrupted": True, "exit_code": 130})
        except (_wire.ChannelClosed, BrokenPipeError):
            return
        except OSError as exc:
            _wire.send(chan, {"error": f"{op} failed: {exc}"})


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _to_json(value: Any) -> tuple[str, str]:
    """(value_json, error): the value as JSON (its repr when it is not JSON), or an error when too large."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(_clip(repr(value), MAX_VALUE))
    if len(text) > MAX_VALUE:
        return "", f"ValueError: the result's JSON is {len(text)} bytes, over the {MAX_VALUE} byte limit"
    return text, ""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def _valued(value: Any) -> dict[str, Any]:
    text, error = _to_json(value)
    return {"exit_code": 1 if error else 0, "value_json": text, "error": error}


def _run_python(code: str) -> dict[str, Any]:
    STATE.cells += 1
    filename = f"<cell {STATE.cells}>"
    try:
        expression = compile(code, filename, "eval")  # a lone expression: evaluate it without the ast pass
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    else:
        try:
            return _valued(eval(expression, STATE.namespace))
        except SystemExit as exc:
            return _exited(exc)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything; report it
            return _raised(exc)
    try:
        tree = ast.parse(code, filename, "exec")
    except (SyntaxError, ValueError) as exc:
        traceback.print_exception(exc, limit=0)
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) else ""
        return {"exit_code": 1, "error": f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}{where}"}
    except (RecursionError, MemoryError) as exc:
        return {"exit_code": 1, "error": f"{type(exc).__name__}: the code is nested too deeply to compile"}
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    try:
        exec(compile(tree, filename, "exec"), STATE.namespace)
        if last is None:
            return {"exit_code": 0, "value_json": ""}
        return _valued(eval(compile(ast.Expression(last.value), filename, "eval"), STATE.namespace))
    except SystemExit as exc:
        return _exited(exc)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything; report it
        return _raised(exc)


def _exited(exc: SystemExit) -> dict[str, Any]:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if not INT32[0] <= code <= INT32[1]:
        code = 1  # what a process would see: exit status is one byte, and nothing here fits int32
    text = _clip(repr(exc.code) if isinstance(exc.code, int) else str(exc.code), MAX_ERROR)
    return {"exit_code": code, "value_json": "", "error": "" if code == 0 else f"SystemExit: {text}"}


def _raised(exc: BaseException) -> dict[str, Any]:
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    try:
        traceback.print_exception(type(exc), exc, tb)
        message = str(exc)
    except BaseException:  # noqa: BLE001 - an exception whose str() raises is still reported
        message = f"<{type(exc).__name__} whose message could not be shown>"
    return {"exit_code": 1, "error": _clip(f"{type(exc).__name__}: {message}", MAX_ERROR)}


def _command_for(language: str, code: str) -> list[str]:
    STATE.cells += 1
    stem = f"{TMP}/.worldrt-{STATE.iid}-cell{STATE.cells}"
    if language == "shell":
        return ["/bin/sh", "-c", code]
    if language == "js":
        with open(stem + ".js", "w") as f:
            f.write(code)
        return ["node", stem + ".js"]
    if language == "cpp":
        with open(stem + ".cpp", "w") as f:
            f.write(code)
        return ["/bin/sh", "-c", f"g++ -O1 -o {stem} {stem}.cpp && exec {stem}"]
    raise ValueError(f"language {language!r} is not available in this sandbox")


def _run_command(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command, streaming its output, until it exits. Output of what it left running in the
    background (``cmd &``) is read while the command runs, not waited for after it exits."""
    stdin = STATE.stdin_fd if STATE.stdin_fd is not None else subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, **env})
    try:
        with selectors.DefaultSelector() as sel:
            assert proc.stdout and proc.stderr
            sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
            sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
            exited = False
            while sel.get_map():
                ready = sel.select(0 if exited else 0.05)
                if exited and not ready:
                    break
                for key, _ in ready:
                    chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    _emit(key.data, chunk)
                exited = exited or proc.poll() is not None
        proc.stdout.close()
        proc.stderr.close()
        return {"exit_code": proc.wait(), "value_json": ""}
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise


def _joined(parts: list[Any]) -> str | bytes:
    return b"".join(parts) if STATE.as_bytes else "".join(parts)


def _stream_collected() -> None:
    """Too much output to return in one frame: send what was collected and stream from now on."""
    collected, STATE.collected = STATE.collected or {}, None
    for event, parts in collected.items():
        data = _joined(parts)
        for start in range(0, len(data), OUTPUT_CHUNK):
            _wire.send(STATE.chan, _output_frame(event, data[start:start + OUTPUT_CHUNK]))


def _drain_fd_output() -> None:
    for fd, event in ((1, "stdout"), (2, "stderr")):
        try:
            if os.fstat(fd).st_size <= STATE.out_offsets[fd]:
                continue
            data = os.pread(fd, MAX_OUTPUT, STATE.out_offsets[fd])
        except OSError:
            continue
        if data:
            STATE.out_offsets[fd] += len(data)
            _emit(event, data)


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _exec(chan: socket.socket, msg: dict[str, Any], stdin_fd: int | None = None) -> None:
    try:
        _exec_in(chan, msg, stdin_fd)
    finally:
        with STATE.lock:
            STATE.running = False
        STATE.stdin_fd = None
        STATE.as_bytes = False
        # The run's reply is sent: a failure here (user code closed the descriptor, or took /workspace's
        # permissions away) must not become a second answer.
        if stdin_fd is not None:
            with contextlib.suppress(OSError):
                os.close(stdin_fd)
        with contextlib.suppress(OSError):
            os.chdir(WORKSPACE)


def _done_refused(chan: socket.socket, kind: str, error: str) -> None:
    _wire.send(chan, {"ev": "done", "exit_code": 2, "error": error[:2000], "refused": kind, "interrupted": False,
                      "cpu_ms": 0.0, "duration_ms": 0.0})


def _enter_cwd(path: Any) -> None:
    """Move into the run's working folder, walked like a file path (``_exec`` moves back after the run)."""
    if not path:
        return
    folder, _rel = _fsops.open_dir(path)
    try:
        os.fchdir(folder)
    finally:
        os.close(folder)


def _exec_in(chan: socket.socket, msg: dict[str, Any], stdin_fd: int | None) -> None:
    language = msg.get("language") or "python"
    env = msg.get("env") or {}
    code = msg.get("code", "")
    argv: Any = msg.get("argv") or []
    if not isinstance(env, dict) or not isinstance(code, str) or not isinstance(language, str) or \
            not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        _wire.send(chan, {"ev": "done", "exit_code": 2, "error": "malformed exec request", "interrupted": False,
                          "cpu_ms": 0.0, "duration_ms": 0.0})
        return
    try:
        _enter_cwd(msg.get("cwd"))
    except _Refused as exc:
        _done_refused(chan, exc.kind if exc.kind in ("invalid", "missing") else "invalid", f"cwd: {exc}")
        return
    except OSError as exc:
        _done_refused(chan, "invalid", f"cwd cannot be used: {exc.strerror or exc}")
        return
    STATE.as_bytes = msg.get("bytes") is True
    STATE.stdin_fd = stdin_fd
    STATE.out_bytes = 0
    STATE.collected = {"stdout": [], "stderr": []} if msg.get("collect") is True else None
    STATE.collected_chars = 0
    with STATE.lock:
        STATE.running = True
        _send_held()
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    saved_env = {k: os.environ.get(k) for k in env}
    saved_stdin = (sys.stdin, os.dup(0)) if stdin_fd is not None else None
    result: dict[str, Any]
    interrupted = False
    try:
        os.environ.update(env)
        if stdin_fd is not None and not argv and language == "python":
            os.dup2(stdin_fd, 0, inheritable=True)
            sys.stdin = io.TextIOWrapper(io.FileIO(0, "rb", closefd=False), encoding="utf-8", errors="surrogateescape")
        STATE.in_user_code = True
        if argv:
            result = _run_command(argv, env)
        elif language == "python":
            result = _run_python(code)
        else:
            result = _run_command(_command_for(language, code), env)
    except KeyboardInterrupt:
        interrupted = True
        result = {"exit_code": 130, "error": "KeyboardInterrupt: interrupted at its timeout"}
    except ValueError as exc:
        result = {"exit_code": 2, "error": str(exc)}
    except OSError as exc:
        result = {"exit_code": 127 if isinstance(exc, FileNotFoundError) else 126,
                  "error": f"{type(exc).__name__}: {argv[0] if argv else language}: {exc.strerror or exc}"}
    finally:
        STATE.in_user_code = False
        if os.getpid() != STATE.pid:
            os._exit(1)  # a fork of user code that fell out of it must not speak for the instance
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        if saved_stdin is not None:
            sys.stdin = saved_stdin[0]
            os.dup2(saved_stdin[1], 0, inheritable=True)
            os.close(saved_stdin[1])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - user code may have replaced the stream
            pass
    sys.stdout = sys.stdout if isinstance(sys.stdout, _FrameStream) else _FrameStream("stdout")
    sys.stderr = sys.stderr if isinstance(sys.stderr, _FrameStream) else _FrameStream("stderr")
    _drain_fd_output()
    if STATE.collected is not None:
        out, err = _joined(STATE.collected["stdout"]), _joined(STATE.collected["stderr"])
        if isinstance(out, bytes) and isinstance(err, bytes):
            result.update(stdout_b=base64.b64encode(out).decode(), stderr_b=base64.b64encode(err).decode())
        else:
            result.update(stdout=out, stderr=err)
        STATE.collected = None
    result.update(ev="done", interrupted=interrupted, cpu_ms=(_cpu_seconds() - cpu0) * 1000,
                  duration_ms=(time.perf_counter() - t0) * 1000)
    with STATE.lock:
        STATE.running = False
        _wire.send(chan, result)


# disks: a member's /workspace and /tmp as a tar stream --------------------------------------------
def _own_files(name: str) -> bool:
    return name.startswith(".worldrt-")


def _archive_to(fd: int) -> dict[str, int]:
    """Write this member's disk, /workspace, /tmp and /dev/shm (not the agent's own files), to ``fd`` as a tar
    stream; how many entries and file bytes it holds."""
    counts = {"files": 0, "bytes": 0}

    def count(info: tarfile.TarInfo) -> tarfile.TarInfo:
        counts["files"] += 1
        counts["bytes"] += info.size if info.isreg() else 0
        return info

    entries = [(top, prefix, name) for top, prefix in _DISK for name in sorted(os.listdir(top))
               if not (top == TMP and _own_files(name))]
    if not entries:
        os.close(fd)
        return counts  # an empty disk: an empty stream, and nothing to unpack
    with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
        for top, prefix, name in entries:
            tar.add(os.path.join(top, name), arcname=f"{prefix}/{name}", recursive=True, filter=count)
    return counts


# tarfile's extraction filters arrived in 3.11.4; the member's own confinement, not the filter, is what
# keeps an archive on its own disk.
_EXTRACT_FILTER: dict[str, str] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
# A restored file or folder keeps its permission bits and sticky bit (the "tar" filter takes group and other
# write off; set-id bits stay off).
_KEPT_MODE_BITS = 0o1777
_SHARED_WRITE = stat.S_IWGRP | stat.S_IWOTH


def _restore_from(fd: int) -> dict[str, int]:
    """Unpack a tar stream of ``workspace/...``, ``tmp/...`` and ``shm/...`` into this member's own disk. Runs as the
    member, inside its own namespaces: whatever the archive holds can only land on its own disk."""
    files = 0
    folders: list[tuple[str, int, float]] = []
    with os.fdopen(fd, "rb") as source, tarfile.open(fileobj=source, mode="r|") as tar:
        for member in tar:
            top, _, rest = member.name.partition("/")
            target = {prefix: folder for folder, prefix in _DISK}.get(top)
            if target is None or not rest:
                continue
            member.name = rest
            if member.islnk():
                link_top, _, member.linkname = member.linkname.partition("/")
                if link_top != top:
                    print(f"worldrt: not restored: {top}/{rest} is a hard link to {link_top}/", file=sys.stderr)
                    continue
            try:
                # A folder gets its mode once its contents are in (a read-only one would refuse them).
                tar.extract(member, target, set_attrs=not member.isdir(), **_EXTRACT_FILTER)  # type: ignore[arg-type]
                files += 1
            except (tarfile.TarError, OSError, KeyError) as exc:
                print(f"worldrt: could not restore {top}/{rest}: {exc}", file=sys.stderr)
                continue
            if member.isdir():
                folders.append((os.path.join(target, rest), member.mode & _KEPT_MODE_BITS, member.mtime))
            elif member.isreg() and member.mode & _SHARED_WRITE:  # the filter took those off: the disk is its own
                path = os.path.join(target, rest)
                with contextlib.suppress(OSError):
                    if not os.path.islink(path):
                        os.chmod(path, member.mode & _KEPT_MODE_BITS)
    for path, mode, mtime in reversed(folders):
        try:
            if not os.path.islink(path):  # a later entry replaced it (only a made-up archive does)
                os.chmod(path, mode)
                os.utime(path, (mtime, mtime))
        except OSError as exc:
            print(f"worldrt: could not restore the mode of {path}: {exc}", file=sys.stderr)
    return {"files": files}


# files: the daemon's WriteFiles, ReadFile and ListFiles, done by the member itself ---------------------
FILE_CHUNK = 1 << 20
MAX_LIST = 10_000
# A path is at most PATH_MAX bytes and each of its names at most NAME_MAX bytes (as UTF-8), the kernel's limits.
PATH_MAX = 4096
NAME_MAX = 255
# What the kernel says when a path names something a file request cannot use: refused as a bad path.
_PATH_ERRNOS = {36: "a name in it is too long", 40: "it leads through a symlink", 20: "a folder in it is a file",
                6: "it is not a regular file (a socket)", 21: "it is a folder"}  # ENAMETOOLONG ELOOP ENOTDIR ENXIO EISDIR


_Refused = _fsops.Refused
_utf8 = _fsops.utf8
_FILE_OPS = {"stat": _fsops.stat_file, "mkdir": _fsops.make_directory, "move": _fsops.move_file,
             "remove": _fsops.remove_file}


def _os_refusal(exc: OSError) -> dict[str, Any]:
    """The answer to a file request the kernel refused: a bad path and a full disk are the caller's to fix."""
    if exc.errno in (28, 27, 122):  # ENOSPC, EFBIG, EDQUOT
        return {"ok": False, "refused": "exhausted", "error": f"{exc.strerror}: the instance's disk or file "
                                                              f"size limit is reached"}
    if exc.errno in _PATH_ERRNOS:
        return {"ok": False, "refused": "invalid", "error": f"the path cannot be used: {_PATH_ERRNOS[exc.errno]}"}
    return {"ok": False, "error": f"{type(exc).__name__}: {exc.strerror or exc}"}


def _files_guarded(operation: Any, msg: dict[str, Any], fd: int | None) -> dict[str, Any]:
    try:
        return {"ok": True, **operation(msg, fd)}
    except _Refused as exc:
        return {"ok": False, "refused": exc.kind, "error": str(exc)[:2000]}
    except OSError as exc:
        return _os_refusal(exc)
    finally:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _read_exact(fd: int, size: int, out: int) -> int:
    """Copy ``size`` bytes from ``fd`` to ``out``; how many came (fewer when the daemon's end closed)."""
    done = 0
    while done < size:
        chunk = os.read(fd, min(FILE_CHUNK, size - done))
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view):]
        done += len(chunk)
    return done


def _write_files(msg: dict[str, Any], fd: int | None) -> dict[str, Any]:
    assert fd is not None
    files = msg.get("files")
    if not isinstance(files, list):
        raise _Refused("invalid", "files must be a list")
    plan = []
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or not isinstance(entry.get("mode"), int):
            raise _Refused("invalid", "each file needs a path, a size and a mode")
        try:
            with _fsops.resolve(entry.get("path"), follow=True) as where:
                if not where.name:
                    raise _Refused("invalid", "a file needs a name (the path names the workspace itself)")
                try:
                    st = os.stat(where.name, dir_fd=where.dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    if not stat.S_ISREG(st.st_mode):
                        raise _Refused("invalid", f"{where.shown()} exists and is not a regular file")
        except _Refused as exc:
            if exc.kind != "missing":  # a folder on the way is missing: it is made below
                raise
        plan.append((entry.get("path"), entry["size"], entry["mode"] & 0o777 or 0o644))
    total = 0
    for path, size, mode in plan:
        # Resolved again: what was checked above may have changed since (the walk is what keeps it inside).
        with _fsops.resolve(path, follow=True, make_parents=0o755) as where:
            if not where.name:
                raise _Refused("invalid", "a file needs a name (the path names the workspace itself)")
            out = os.open(where.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK |
                          os.O_CLOEXEC, mode, dir_fd=where.dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(out).st_mode):
                raise _Refused("invalid", f"{path} exists and is not a regular file")
            os.set_blocking(out, True)
            got = _read_exact(fd, size, out)
            os.fchmod(out, mode)
        finally:
            os.close(out)
        if got != size:
            raise _Refused("invalid", f"the daemon sent {got} of {size} bytes")
        total += size
    return {"files": len(plan), "bytes": total}


_kind = _fsops.kind


def _list_files(msg: dict[str, Any], _fd: int | None) -> dict[str, Any]:
    folder, rel = _fsops.open_dir(msg.get("path") or "")
    entries: list[dict[str, Any]] = []
    truncated = False
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if len(entries) >= MAX_LIST:
                    truncated = True
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while listed
                name = _utf8(entry.name, f"a name in {'the workspace' if rel == '.' else rel}:")
                path = os.path.normpath(os.path.join(rel, name))
                entries.append({"name": name, "path": path, "size": st.st_size, "mode": st.st_mode & 0o7777,
                                "kind": _kind(st.st_mode), "mtime_ns": st.st_mtime_ns})
    finally:
        os.close(folder)
    entries.sort(key=lambda e: str(e["name"]))
    return {"path": "" if rel == "." else rel, "entries": entries, "truncated": truncated}


def _read_file(chan: socket.socket, msg: dict[str, Any], fd: int) -> None:
    """Answer with the file's size and mode, then write what was asked of it into ``fd`` and close it."""
    answered = False
    try:
        offset, length = msg.get("offset", 0), msg.get("length", 0)
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
            raise _Refused("invalid", "offset and length must be whole numbers, not negative")
        with _fsops.resolve(msg.get("path"), follow=True) as where:
            rel = where.shown()
            if not where.name:
                raise _Refused("invalid", "the workspace is a folder: list it")
            try:
                # a socket cannot even be opened: say what it is before trying
                _regular(rel, os.stat(where.name, dir_fd=where.dir_fd, follow_symlinks=False))
                src = os.open(where.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                              dir_fd=where.dir_fd)
            except FileNotFoundError:
                raise _Refused("missing", f"no file {rel} in the workspace") from None
        try:
            st = os.fstat(src)
            _regular(rel, st)
            _wire.send(chan, {"ok": True, "size": st.st_size, "mode": st.st_mode & 0o7777})
            answered = True
            left = max(0, st.st_size - offset) if not length else min(length, max(0, st.st_size - offset))
            position = offset
            try:
                while left > 0:
                    chunk = os.pread(src, min(FILE_CHUNK, left), position)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    position += len(chunk)
                    left -= len(chunk)
            except OSError:
                pass  # the daemon stopped reading (its caller went away, or its limit): the stream ends
        finally:
            os.close(src)
    except _Refused as exc:
        _wire.send(chan, {"ok": False, "refused": exc.kind, "error": str(exc)[:2000]})
    except OSError as exc:
        if not answered:
            _wire.send(chan, _os_refusal(exc))
    finally:
        os.close(fd)


def _watch(chan: socket.socket, msg: dict[str, Any]) -> None:
    """Start a watcher of a folder (``_watcher.py``, a process of its own) and hand the daemon its socket."""
    STATE.watchers = [w for w in STATE.watchers if w.poll() is None]  # reap the ended ones
    max_dirs = msg.get("max_dirs")
    if not isinstance(max_dirs, int) or not 0 < max_dirs <= 100_000:
        _wire.send(chan, {"ok": False, "refused": "invalid", "error": "max_dirs must be a count"})
        return
    ours, theirs = socket.socketpair()
    folder = -1
    try:
        folder, rel = _fsops.open_dir(msg.get("path") or "")
        watcher = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.join(AGENT_DIR, "_watcher.py"), str(theirs.fileno()), str(folder),
             "" if rel == "." else rel, "1" if msg.get("recursive") is True else "0", str(max_dirs)],
            pass_fds=(theirs.fileno(), folder), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd="/")
    except _Refused as exc:
        _wire.send(chan, {"ok": False, "refused": exc.kind, "error": str(exc)[:2000]})
    except OSError as exc:
        if exc.errno == 11:  # EAGAIN: the instance's process limit
            _wire.send(chan, {"ok": False, "refused": "exhausted", "error": "the instance is at its process limit: "
                                                                            "a watcher needs one process"})
        else:
            _wire.send(chan, _os_refusal(exc))
    else:
        STATE.watchers.append(watcher)
        _wire.send(chan, {"ok": True, "path": "" if rel == "." else rel}, [ours.fileno()])
    finally:
        ours.close()
        theirs.close()
        if folder >= 0:
            os.close(folder)


def _regular(rel: str, st: os.stat_result) -> None:
    """Refuse to read what is not a regular file, naming what it is."""
    if stat.S_ISDIR(st.st_mode):
        raise _Refused("invalid", f"{rel} is a folder: list it")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a socket" if stat.S_ISSOCK(st.st_mode) else "a fifo" if stat.S_ISFIFO(st.st_mode)
                else "a symlink" if stat.S_ISLNK(st.st_mode) else "a device")
        raise _Refused("invalid", f"{rel} is not a regular file ({kind})")


# processes ----------------------------------------------------------------------------------------
def _start_supervisor(chan: socket.socket, key: str) -> None:
    """Fork the supervisor of this instance's long-lived processes (see _procman), as a grandchild so it
    is not ours to reap and no snapshot of ours carries it; hand its channel to the daemon."""
    ours, theirs = socket.socketpair()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        ours.close()
        theirs.close()
        _wire.send(chan, {"error": f"fork failed: {exc.strerror} (the instance's process limit?)"})
        return
    if pid == 0:
        try:
            ours.close()
            chan.close()
            if os.fork() == 0:
                import _procman

                _procman.serve(theirs, key)
        finally:
            os._exit(0)
    theirs.close()
    os.waitpid(pid, 0)
    _wire.send(chan, {"ok": True}, [ours.fileno()])
    ours.close()


# snapshots and branches ---------------------------------------------------------------------------
def _snapshot(chan: socket.socket, msg: dict[str, Any], archive_fd: int) -> None:
    """Fork a frozen copy of this process (double fork: the copy is not our child); the copy archives
    this instance's disk to ``archive_fd`` before it says hello."""
    ours, theirs = socket.socketpair()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        for end in (ours, theirs):
            end.close()
        os.close(archive_fd)
        _wire.send(chan, {"error": f"fork failed: {exc.strerror} (the instance's process limit?)"})
        return
    if pid == 0:
        try:
            ours.close()
            chan.close()
            try:
                copy = os.fork()
            except OSError as exc:
                _wire.send_hello(theirs, {"hello": str(msg.get("snapshot_id", "")),
                                          "error": f"fork failed: {exc.strerror} (the instance's process limit?)"})
            else:
                if copy == 0:
                    _become_snapshot(theirs, str(msg.get("snapshot_id", "")), archive_fd)
        finally:
            os._exit(0)
    theirs.close()
    os.close(archive_fd)
    os.waitpid(pid, 0)
    _wire.send(chan, {"ok": True}, [ours.fileno()])
    ours.close()


def _become_snapshot(chan: socket.socket, snapshot_id: str, archive_fd: int) -> None:
    try:
        _handle(signal.SIGCHLD, _signal.SIG_IGN)
        _handle(signal.SIGINT, _signal.SIG_IGN)
        os.setsid()
        try:
            counts = _archive_to(archive_fd)
        except OSError as exc:
            _wire.send_hello(chan, {"hello": snapshot_id, "error": f"could not archive the disk: {exc}"})
            return
        # What the instance had open and shared belongs to it: its branches get none of it (they reopen
        # its files, at the offsets of now, on their own disks). Done once here, not in every branch.
        try:
            STATE.reopen = _open_files({chan.fileno()})
        except OSError as exc:
            _wire.send_hello(chan, {"hello": snapshot_id, "error": str(exc.strerror or exc)})
            return
        # Output the instance's threads made is the instance's; a thread that held the lock at the fork is gone.
        STATE.held, STATE.held_size, STATE.held_dropped = {"stdout": [], "stderr": []}, 0, 0
        STATE.lock = threading.RLock()
        try:
            _linux.unshare_shared_memory()
        except (OSError, MemoryError) as exc:
            _wire.send_hello(chan, {"hello": snapshot_id, "error": f"could not copy the instance's shared memory "
                                                                   f"(the copy counts against its memory limit): {exc}"})
            return
        STATE.chan = chan
        _wire.send_hello(chan, {"hello": snapshot_id, **counts})
        for msg in _requests(chan, "branch", "a snapshot"):
            _branch(chan, msg.get("children") or [])
    finally:
        os._exit(0)


def _requests(chan: socket.socket, op: str, role: str) -> Iterator[dict[str, Any]]:
    """The ``op`` requests arriving on ``chan`` until it closes; any other op is answered with an error."""
    while True:
        try:
            msg, fds, _ = _wire.recv(chan)
        except (_wire.ChannelClosed, OSError, ValueError):
            return
        _close_all(fds)
        if not isinstance(msg, dict) or msg.get("op") != op:
            _wire.send(chan, {"error": f"{role} only answers {op}"})
            continue
        yield msg


def _branch(chan: socket.socket, children: list[Any]) -> None:
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        # numpy's first seed() in a process costs ~10 ms; pay it once here, not in every branch.
        numpy.random.seed(0)
    ends: list[tuple[str, socket.socket]] = []
    errors: list[dict[str, Any]] = []
    sent = 0
    for index, child in enumerate(children):
        iid = str(child.get("iid", "")) if isinstance(child, dict) else ""
        try:
            ours, theirs = socket.socketpair()
        except OSError as exc:
            errors.append({"index": index, "iid": iid, "message": f"no descriptor for its channel: {exc.strerror}"})
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            errors.append({"index": index, "iid": iid, "message": f"fork failed: {exc.strerror}"})
            continue
        if pid == 0:
            try:
                ours.close()
                chan.close()
                for _, other in ends:
                    other.close()
                _become_branch(theirs, iid)
            except BaseException:  # noqa: BLE001 - a child must never return into the snapshot's loop
                traceback.print_exc()
            finally:
                os._exit(1)
        theirs.close()
        ends.append((iid, ours))
        if len(ends) - sent == STREAM_CHILDREN:
            _send_children(chan, ends[sent:], [], more=True)
            for _, end in ends[sent:]:
                end.close()
            sent = len(ends)
    _send_children(chan, ends[sent:], errors, more=False)
    for _, end in ends[sent:]:
        end.close()


def _send_children(chan: socket.socket, ends: list[tuple[str, socket.socket]], errors: list[dict[str, Any]],
                   more: bool) -> None:
    _wire.send(chan, {"ok": True, "iids": [iid for iid, _ in ends], "errors": errors, "more": more},
               [s.fileno() for _, s in ends])


def _open_files(keep: set[int]) -> list[tuple[int, str, int, int]]:
    """Regular files this process has open on its disk (and not deleted), as (fd, path, flags, offset). Every
    other descriptor except ``keep`` becomes a placeholder that fails as a closed one does (EBADF): a fork
    inherits its parent's pipes and sockets, and a number its code still holds must not come back as a new
    descriptor (its channel, or a file it opens). OSError when too few are left for a branch's own."""
    names = os.listdir("/proc/self/fd")
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and len(names) + FREE_DESCRIPTORS > limit:
        raise OSError(errno.EMFILE, f"the instance holds {len(names) - 1} of its {limit} descriptors; a snapshot "
                                    f"needs {FREE_DESCRIPTORS} free (close some, or raise RLIMIT_NOFILE)")
    files = []
    placeholder = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
    for name in names:
        fd = int(name)
        if fd in keep or fd < 3 or fd == placeholder:
            continue
        try:
            st = os.fstat(fd)
        except OSError:
            continue  # the listing's own descriptor, gone
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 0 and path.startswith(_ON_DISK):
                with open(f"/proc/self/fdinfo/{fd}") as f:
                    info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
                files.append((fd, path, int(info["flags"].strip(), 8), int(info["pos"].strip())))
        except (OSError, KeyError, ValueError):
            pass
        os.dup2(placeholder, fd, inheritable=False)
    os.close(placeholder)
    return files


def _reopen(files: list[tuple[int, str, int, int]]) -> None:
    """Open the same files again, at the same descriptors and offsets, on this member's own disk."""
    for fd, path, flags, offset in files:
        try:
            fresh = os.open(path, flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC) | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            continue
        if not stat.S_ISREG(os.fstat(fresh).st_mode):
            os.close(fresh)  # the name is no longer a regular file on this disk: the placeholder stays
            continue
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fresh, True)
        if fresh != fd:
            os.dup2(fresh, fd, inheritable=not flags & os.O_CLOEXEC)
            os.close(fresh)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError:
            pass


def _become_branch(chan: socket.socket, iid: str) -> None:
    """A child of a snapshot: leave everything of the parent behind and become an instance of its own (its
    handlers are set back in ``_become_live``: it forks nothing before)."""
    os.setsid()
    quiet = os.open("/dev/null", os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.close(quiet)
    _wire.send_hello(chan, {"hello": iid})
    msg, fds, _ = _wire.recv(chan)
    if not isinstance(msg, dict) or msg.get("op") != "isolate" or len(fds) not in (4, 5):
        _close_all(fds)
        _wire.send(chan, {"error": "expected the namespaces to isolate in"})
        return
    for fd, (_name, nstype) in zip(fds, _linux.MEMBER_NAMESPACES):
        _linux.setns(fd, nstype)
    _close_all(fds[:4])
    visible = int(msg["uid"])
    os.setresgid(visible, visible, visible)
    os.setresuid(visible, visible, visible)
    _linux.drop_capabilities()
    os.chdir(WORKSPACE)
    restored = _restore_from(fds[4])["files"] if len(fds) == 5 else 0
    _reopen(STATE.reopen)
    _wire.send(chan, {"ready": iid, "files": restored})
    _become_live(chan, iid, reseed=True)


# the zygote ---------------------------------------------------------------------------------------
def _spawn(chan: socket.socket, msg: dict[str, Any]) -> None:
    """Fork the sandbox's one member: its disk, its uid, its limits and the member seccomp filter."""
    if STATE.member_pid and os.waitpid(STATE.member_pid, os.WNOHANG) == (0, 0):
        _wire.send(chan, {"error": "this sandbox's member is still running"})
        return
    uid, iid = int(msg["uid"]), str(msg["iid"])
    _linux.setup_disk(int(msg["disk_bytes"]), uid, uid)
    ours, theirs = socket.socketpair()
    try:
        pid = os.fork()
    except OSError as exc:
        ours.close()
        theirs.close()
        _wire.send(chan, {"error": f"fork failed: {exc.strerror}"})
        return
    if pid == 0:
        try:
            ours.close()
            chan.close()
            os.setsid()
            _apply_limits(msg["limits"])
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            _linux.load_seccomp(STATE.member_filter)
            _wire.send_hello(theirs, {"hello": iid})
            _become_live(theirs, iid, reseed=True)
        except BaseException:  # noqa: BLE001 - a child must never return into the zygote's loop
            traceback.print_exc()
        finally:
            os._exit(1)
    STATE.member_pid = pid
    theirs.close()
    _wire.send(chan, {"ok": True}, [ours.fileno()])
    ours.close()


def _await_byte(fd: int, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
        raise TimeoutError("a namespace helper did not answer in time")
    return os.read(fd, 1)


def _helper(owner: int, uids: list[int], disk_bytes: int, to_helper_r: int, from_helper_w: int,
            out: socket.socket) -> None:
    """A helper of ``_prepare_sets``, running as the lineage's uid: one user namespace for the whole
    batch (mapped by the zygote), then for each member-to-be a mount, network and ipc namespace with its
    own disk and loopback, handed back over ``out``; then it waits to be killed (the namespaces outlive it)."""
    try:
        _linux.die_with_parent(signal.SIGKILL)
        try:
            os.setgroups([])
        except PermissionError:
            pass  # in a lineage's namespace setgroups is denied; the helper's groups go nowhere
        os.setresgid(owner, owner, owner)
        os.setresuid(owner, owner, owner)
        _linux.unshare(_linux.CLONE_NEWUSER | _linux.CLONE_NEWNS)
        os.write(from_helper_w, b"u")
        if os.read(to_helper_r, 1) != b"g":
            os._exit(1)
        os.setresgid(owner, owner, owner)
        os.setresuid(owner, owner, owner)
        _linux.make_mounts_private()
        base = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        _wire.send(out, {"userns": True}, [os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)])
        for uid in uids:
            _linux.setns(base, _linux.CLONE_NEWNS)
            _linux.unshare(_linux.CLONE_NEWNS | _linux.CLONE_NEWNET | _linux.CLONE_NEWIPC)
            _linux.setup_disk(disk_bytes, uid, uid, shared_dirs_owned=True)
            _linux.loopback_up()
            fds = [os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in ("mnt", "net", "ipc")]
            _wire.send(out, {"uid": uid}, fds)
            _close_all(fds)
        _wire.send(out, {"done": True})
        os.read(to_helper_r, 1)
    except BaseException:  # noqa: BLE001 - report by exiting; the zygote sees the pipe close
        traceback.print_exc()
    finally:
        os._exit(0)


def _prepare_sets(link: socket.socket, msg: dict[str, Any], parent_userns: int | None) -> None:
    """In a fork of the zygote (entered into the lineage's user namespace when it is not the sandbox's):
    have a helper make the requested sets, map their user namespace, and pass each set's descriptors on
    over ``link`` (the batch's user namespace first)."""
    if parent_userns is not None:
        _linux.setns(parent_userns, _linux.CLONE_NEWUSER)
        os.close(parent_userns)
    deadline = time.monotonic() + NSPREP_TIMEOUT_S
    owner, uids = int(msg["owner_uid"]), [int(u) for u in msg["uids"]]
    ours, theirs = socket.socketpair()
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ours.close()
        os.close(to_w)
        os.close(from_r)
        _helper(owner, uids, int(msg["disk_bytes"]), to_r, from_w, theirs)
    theirs.close()
    os.close(to_r)
    os.close(from_w)
    try:
        if _await_byte(from_r, deadline) != b"u":
            raise OSError("the namespace helper could not make its user namespace")
        _linux.write_id_maps(pid, [(int(msg["lo"]), int(msg["lo"]), int(msg["hi"]) - int(msg["lo"]))])
        os.write(to_w, b"g")
        ours.settimeout(max(0.1, deadline - time.monotonic()))
        while True:
            reply, fds, _ = _wire.recv(ours)
            _wire.send(link, reply, fds)
            _close_all(fds)
            if reply.get("done"):
                break
    except (OSError, TimeoutError, ValueError, _wire.ChannelClosed) as exc:
        _wire.send(link, {"error": f"preparing namespaces stopped: {exc}"})
    finally:
        ours.close()
        os.close(to_w)
        os.close(from_r)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def _nsprep(chan: socket.socket, msg: dict[str, Any], fds: list[int]) -> None:
    """Relay what ``_prepare_sets`` (in a fork, so the zygote stays where it is) makes: the batch's user
    namespace, then each set, each frame with its descriptors."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            chan.close()
            _prepare_sets(theirs, msg, fds[0] if fds else None)
        except BaseException:  # noqa: BLE001 - the zygote reports what is missing
            traceback.print_exc()
        finally:
            os._exit(0)
    theirs.close()
    _close_all(fds)
    ours.settimeout(NSPREP_TIMEOUT_S + 1)
    try:
        while True:
            reply, got, _ = _wire.recv(ours)
            last = "done" in reply or "error" in reply
            _wire.send(chan, {**reply, "ok": "error" not in reply, "more": not last}, got)
            _close_all(got)
            if last:
                break
    except (OSError, _wire.ChannelClosed, ValueError) as exc:
        _wire.send(chan, {"ok": False, "error": f"namespace preparation stopped: {exc}", "more": False})
    finally:
        ours.close()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def _serve_zygote(chan: socket.socket) -> None:
    while True:
        try:
            msg, fds, _ = _wire.recv(chan)
        except (_wire.ChannelClosed, OSError, ValueError):
            return
        op = msg.get("op") if isinstance(msg, dict) else None
        try:
            if op == "spawn":
                _close_all(fds)
                _spawn(chan, msg)
            elif op == "nsprep":
                _nsprep(chan, msg, fds)
            else:
                _close_all(fds)
                _wire.send(chan, {"error": f"the zygote does not answer {op!r}"})
        except (KeyError, TypeError, ValueError, OSError) as exc:
            _wire.send(chan, {"error": f"{op} failed: {exc}"})


def main(argv: list[str]) -> None:
    chan = socket.socket(fileno=int(argv[1]))
    nproc = int(argv[2])
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _linux.remount_proc_hidden()
    with open(MEMBER_FILTER, "rb") as f:
        STATE.member_filter = f.read()
    STATE.namespace = {"__name__": "__main__", "__builtins__": builtins}
    import gc

    gc.collect()
    gc.freeze()  # keep the zygote's objects out of the collector, so forks do not touch their pages
    _wire.send(chan, {"ready": True, "pid": os.getpid()})
    _serve_zygote(chan)


if __name__ == "__main__":
    main(sys.argv)
