"""The program that runs inside a sandbox: a zygote that forks instances, which fork snapshots.

Started by the daemon as ``python agent.py CHANNEL_FD UID GID NPROC`` inside bubblewrap. Roles:

* zygote: pre-started, answers ``spawn`` by forking an instance and handing its channel to the daemon;
* instance: runs code in a persistent namespace (``exec``) and forks frozen copies (``snapshot``);
* snapshot: frozen copy of an instance; answers ``branch`` by forking live instances from itself.

Every forked process says hello with SCM_CREDENTIALS so the daemon learns its pid. Standard library
only: this file is executed by path inside the sandbox.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import os
import random
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

import _wire  # the agent runs as a script, so its directory is on sys.path

# Output kept per run: under gRPC's default 4 MiB message limit, so every client can read the result.
MAX_OUTPUT = 2 * 1024 * 1024
FLUSH_AT = 8192


class _State:
    chan: socket.socket
    iid = ""
    pid = 0
    in_user_code = False
    out_bytes = 0
    namespace: dict[str, Any] = {}
    out_offsets = {1: 0, 2: 0}
    cells = 0


STATE = _State()


class _FrameStream(io.TextIOBase):
    """sys.stdout/sys.stderr of an instance: text goes to the daemon as it is produced."""

    def __init__(self, event: str) -> None:
        self.event = event
        self._buf: list[str] = []
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not text:
            return 0
        self._buf.append(text)
        self._size += len(text)
        if "\n" in text or self._size >= FLUSH_AT:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._buf:
            return
        text = "".join(self._buf)
        self._buf.clear()
        self._size = 0
        _emit(self.event, text)


def _emit(event: str, text: str) -> None:
    if os.getpid() != STATE.pid:
        # A process user code forked: the channel belongs to the instance, so write to the captured fds.
        os.write(1 if event == "stdout" else 2, text.encode("utf-8", "replace"))
        return
    room = MAX_OUTPUT - STATE.out_bytes
    if room <= 0:
        return
    if len(text) > room:
        text = text[:room] + "\n[worldrt: output truncated at 2 MiB]\n"
    STATE.out_bytes += len(text)
    _wire.send(STATE.chan, {"ev": event, "d": text})


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
        target = os.open(f"/tmp/{iid}.{suffix}", os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
        STATE.out_offsets[fd] = 0


def _reseed() -> None:
    seed = int.from_bytes(os.urandom(8), "little")
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed % (2**32))


def _become_live(chan: socket.socket, iid: str, workspace: str, copy_from: str | None,
                 limits: dict[str, int] | None, reseed: bool) -> None:
    """Turn a freshly forked child into a live instance and serve its channel until it closes."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, _on_sigint)
    os.setsid()
    if limits:
        _apply_limits(limits)
    if copy_from:
        shutil.copytree(copy_from, workspace, symlinks=True)
    else:
        os.makedirs(workspace, mode=0o700, exist_ok=True)
    os.chdir(workspace)
    os.environ["HOME"] = workspace
    os.environ["WORLDRT_WORKSPACE"] = workspace
    os.environ["WORLDRT_INSTANCE_ID"] = iid
    STATE.chan = chan
    STATE.iid = iid
    STATE.pid = os.getpid()
    _redirect_fd_output(iid)
    sys.stdout = _FrameStream("stdout")
    sys.stderr = _FrameStream("stderr")
    if reseed:
        _reseed()
    chan.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    _wire.send_hello(chan, {"hello": iid})
    _serve_instance(chan)
    os._exit(0)


def _serve_instance(chan: socket.socket) -> None:
    while True:
        try:
            msg, fds, _ = _wire.recv(chan)
        except (_wire.ChannelClosed, OSError):
            return
        except KeyboardInterrupt:
            continue
        for fd in fds:
            os.close(fd)
        op = msg.get("op")
        try:
            if op == "exec":
                _exec(chan, msg)
            elif op == "snapshot":
                _snapshot(chan, msg)
            elif op == "ping":
                _wire.send(chan, {"ok": True})
            else:
                _wire.send(chan, {"error": f"unknown op {op!r}"})
        except KeyboardInterrupt:
            # An interrupt that landed between the end of user code and the reply.
            _wire.send(chan, {"ev": "done", "interrupted": True, "exit_code": 130})
        except (_wire.ChannelClosed, BrokenPipeError):
            return


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(repr(value))


def _run_python(code: str) -> dict[str, Any]:
    STATE.cells += 1
    filename = f"<cell {STATE.cells}>"
    try:
        expression = compile(code, filename, "eval")  # a lone expression: evaluate it without the ast pass
    except SyntaxError:
        pass
    else:
        try:
            return {"exit_code": 0, "value_json": _to_json(eval(expression, STATE.namespace))}
        except SystemExit as exc:
            return _exited(exc)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything; report it
            return _raised(exc)
    try:
        tree = ast.parse(code, filename, "exec")
    except SyntaxError as exc:
        traceback.print_exception(exc, limit=0)
        return {"exit_code": 1, "error": f"SyntaxError: {exc.msg} (line {exc.lineno})"}
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    try:
        exec(compile(tree, filename, "exec"), STATE.namespace)
        if last is None:
            return {"exit_code": 0, "value_json": ""}
        value = eval(compile(ast.Expression(last.value), filename, "eval"), STATE.namespace)
        return {"exit_code": 0, "value_json": _to_json(value)}
    except SystemExit as exc:
        return _exited(exc)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything; report it
        return _raised(exc)


def _exited(exc: SystemExit) -> dict[str, Any]:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return {"exit_code": code, "value_json": "", "error": "" if code == 0 else f"SystemExit: {exc.code}"}


def _raised(exc: BaseException) -> dict[str, Any]:
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    traceback.print_exception(type(exc), exc, tb)
    return {"exit_code": 1, "error": f"{type(exc).__name__}: {exc}"}


def _command_for(language: str, code: str) -> list[str]:
    STATE.cells += 1
    stem = f"/tmp/{STATE.iid}-cell{STATE.cells}"
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
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, **env})
    try:
        with selectors.DefaultSelector() as sel:
            assert proc.stdout and proc.stderr
            sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
            sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
            open_streams = 2
            while open_streams:
                for key, _ in sel.select():
                    chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if not chunk:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                        continue
                    _emit(key.data, chunk.decode("utf-8", "replace"))
        return {"exit_code": proc.wait(), "value_json": ""}
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise


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
            _emit(event, data.decode("utf-8", "replace"))


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _exec(chan: socket.socket, msg: dict[str, Any]) -> None:
    language = msg.get("language") or "python"
    env = msg.get("env") or {}
    STATE.out_bytes = 0
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    saved_env = {k: os.environ.get(k) for k in env}
    result: dict[str, Any]
    interrupted = False
    try:
        os.environ.update(env)
        STATE.in_user_code = True
        if language == "python":
            result = _run_python(msg.get("code", ""))
        else:
            result = _run_command(_command_for(language, msg.get("code", "")), env)
    except KeyboardInterrupt:
        interrupted = True
        result = {"exit_code": 130, "error": "KeyboardInterrupt: interrupted at its timeout"}
    except ValueError as exc:
        result = {"exit_code": 2, "error": str(exc)}
    finally:
        STATE.in_user_code = False
        if os.getpid() != STATE.pid:
            os._exit(1)  # a fork of user code that fell out of it must not speak for the instance
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - user code may have replaced the stream
            pass
    sys.stdout = sys.stdout if isinstance(sys.stdout, _FrameStream) else _FrameStream("stdout")
    sys.stderr = sys.stderr if isinstance(sys.stderr, _FrameStream) else _FrameStream("stderr")
    _drain_fd_output()
    result.update(ev="done", interrupted=interrupted, cpu_ms=(_cpu_seconds() - cpu0) * 1000,
                  duration_ms=(time.perf_counter() - t0) * 1000)
    _wire.send(chan, result)


def _snapshot(chan: socket.socket, msg: dict[str, Any]) -> None:
    """Fork a frozen copy of this process (double fork: the copy is not our child) and copy the workspace."""
    ours, theirs = socket.socketpair()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            chan.close()
            if os.fork() == 0:
                _become_snapshot(theirs, msg["snapshot_id"], msg["workspace"])
        finally:
            os._exit(0)
    theirs.close()
    os.waitpid(pid, 0)
    _wire.send(chan, {"ok": True}, [ours.fileno()])
    ours.close()


def _become_snapshot(chan: socket.socket, snapshot_id: str, workspace: str) -> None:
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.setsid()
        shutil.copytree(os.getcwd(), workspace, symlinks=True)
        os.chdir(workspace)
        STATE.chan = chan
        chan.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        _wire.send_hello(chan, {"hello": snapshot_id})
        _serve_snapshot(chan, workspace)
    finally:
        os._exit(0)


def _requests(chan: socket.socket, op: str, role: str) -> Iterator[dict[str, Any]]:
    """The ``op`` requests arriving on ``chan`` until it closes; any other op is answered with an error."""
    while True:
        try:
            msg, fds, _ = _wire.recv(chan)
        except (_wire.ChannelClosed, OSError):
            return
        for fd in fds:
            os.close(fd)
        if msg.get("op") != op:
            _wire.send(chan, {"error": f"{role} only answers {op}, not {msg.get('op')!r}"})
            continue
        yield msg


def _serve_snapshot(chan: socket.socket, workspace: str) -> None:
    for msg in _requests(chan, "branch", "a snapshot"):
        _branch(chan, msg["children"], workspace)


def _branch(chan: socket.socket, children: list[dict[str, str]], workspace: str) -> None:
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        # numpy's first seed() in a process costs ~10 ms; pay it once here, not in every branch.
        numpy.random.seed(0)
    ends: list[tuple[str, socket.socket]] = []
    errors: list[dict[str, Any]] = []
    for index, child in enumerate(children):
        ours, theirs = socket.socketpair()
        try:
            pid = os.fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            errors.append({"index": index, "iid": child["iid"], "message": f"fork failed: {exc.strerror}"})
            continue
        if pid == 0:
            try:
                ours.close()
                chan.close()
                for _, other in ends:
                    other.close()
                _become_live(theirs, child["iid"], child["workspace"], workspace, None, reseed=True)
            except BaseException:  # noqa: BLE001 - a child must never return into the snapshot's loop
                traceback.print_exc()
            finally:
                os._exit(1)
        theirs.close()
        ends.append((child["iid"], ours))
    for start in range(0, max(len(ends), 1), _wire.MAX_FDS_PER_FRAME):
        chunk = ends[start:start + _wire.MAX_FDS_PER_FRAME]
        last = start + _wire.MAX_FDS_PER_FRAME >= len(ends)
        _wire.send(chan, {"ok": True, "iids": [iid for iid, _ in chunk], "errors": errors if last else [],
                          "more": not last}, [s.fileno() for _, s in chunk])
    for _, s in ends:
        s.close()


def _serve_zygote(chan: socket.socket) -> None:
    for msg in _requests(chan, "spawn", "the zygote"):
        ours, theirs = socket.socketpair()
        try:
            pid = os.fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            _wire.send(chan, {"error": f"fork failed: {exc.strerror}"})
            continue
        if pid == 0:
            try:
                ours.close()
                chan.close()
                _become_live(theirs, msg["iid"], msg["workspace"], None, msg["limits"], reseed=True)
            except BaseException:  # noqa: BLE001 - a child must never return into the zygote's loop
                traceback.print_exc()
            finally:
                os._exit(1)
        theirs.close()
        _wire.send(chan, {"ok": True}, [ours.fileno()])
        ours.close()


def main(argv: list[str]) -> None:
    chan = socket.socket(fileno=int(argv[1]))
    uid, gid, nproc = int(argv[2]), int(argv[3]), int(argv[4])
    if os.getuid() == 0 and uid > 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    STATE.namespace = {"__name__": "__main__", "__builtins__": builtins}
    import gc

    gc.collect()
    gc.freeze()  # keep the zygote's objects out of the collector, so forks do not touch their pages
    _wire.send(chan, {"ready": True, "pid": os.getpid(), "uid": os.getuid()})
    _serve_zygote(chan)


if __name__ == "__main__":
    main(sys.argv)
