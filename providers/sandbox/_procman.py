"""Inside a sandbox: the supervisor of one instance's long-lived processes (StartProcess).

A double fork of the instance's interpreter (so it shares the instance's uid, namespaces, disk, cgroup,
rlimits and seccomp filter, and is not its child), in a session of its own. It answers the daemon on a
channel of its own, so processes start, and are signalled, while the instance runs code:

* ``start`` (with descriptors the DAEMON made: the write ends of the stdout and stderr pipes, the read
  end of the stdin pipe when stdin is piped): fork, and in the child start a session (so the process and
  what it starts form a group the daemon can signal), die with this supervisor (PDEATHSIG), take the
  descriptors as 0, 1 and 2, close every other, and exec. The reply says its pid, or why exec failed.
* ``signal``: send a signal to a running process, or to its process group.
* Every exit is reaped (SIGCHLD) and reported as an ``exit`` event: the exit code, or the signal.

The daemon never reads a path of the sandbox: it holds its own ends of the pipes, so output and stdin
never pass through here. When the channel closes, every running process group is killed and this
supervisor exits; if it is killed, its processes die with it (PDEATHSIG); whatever they left running
ends with the instance's cgroup. Standard library only: this file is executed inside the sandbox.
"""

from __future__ import annotations

import errno
import gc
import os
import selectors
import signal
import socket
from typing import Any

import _fsops  # type: ignore[import-not-found]  # beside this file in the sandbox
import _linux
import _wire

_MAX_ARGS = 4096


def _child(argv: list[str], env: dict[str, str], folder: int, fds: list[int], report: int) -> None:
    """In the forked child: become the process, in ``folder`` (never returns)."""
    try:
        os.fchdir(folder)
        os.setsid()
        _linux.die_with_parent(signal.SIGKILL)
        for signum in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        stdin = fds[2] if len(fds) == 3 else os.open("/dev/null", os.O_RDONLY)
        for target, fd in ((0, stdin), (1, fds[0]), (2, fds[1])):
            os.dup2(fd, target, inheritable=True)
        os.closerange(3, report)
        os.closerange(report + 1, 65536)
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        os.write(report, f"exec:{exc.errno}:{argv[0]}: {exc.strerror or exc}".encode()[:400])
    except BaseException as exc:  # noqa: BLE001 - a child must never return into the supervisor's loop
        os.write(report, f"exec:0:{type(exc).__name__}".encode())
    finally:
        os._exit(127)


def _checked(msg: dict[str, Any]) -> tuple[list[str], dict[str, str], str]:
    argv, env, cwd = msg.get("argv"), msg.get("env"), msg.get("cwd")
    if not isinstance(argv, list) or not argv or len(argv) > _MAX_ARGS or \
            not all(isinstance(a, str) and "\0" not in a for a in argv) or not argv[0]:
        raise ValueError("argv must name a program (argv[0]) and hold strings without NUL")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k and
                                            "\0" not in k + v for k, v in env.items()):
        raise ValueError("env must map names (without '=' or NUL) to strings")
    if not isinstance(cwd, str) or "\0" in cwd:
        raise ValueError("cwd must be a path")
    return argv, {**os.environ, **env}, cwd


def _folder(cwd: str) -> int:
    """A descriptor of the working folder. A relative ``cwd`` is walked within the workspace as Execute's is
    (``_fsops``: no symlink or ``..`` leading out of it); an absolute one is any folder of the instance its
    processes may enter (``/tmp``), opened here, inside the sandbox, as the process itself could ``cd``."""
    try:
        if cwd.startswith("/"):
            return os.open(cwd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        folder: int = _fsops.open_dir(cwd)[0]
    except _fsops.Refused as exc:
        raise ValueError(f"the working directory cannot be used: {exc}") from None
    except OSError as exc:
        raise ValueError(f"the working directory cannot be used: {cwd}: {exc.strerror or exc}") from None
    return folder


class Supervisor:
    def __init__(self, chan: socket.socket) -> None:
        self.chan = chan
        self.running: set[int] = set()

    def start(self, msg: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        try:
            if len(fds) != (3 if msg.get("stdin") is True else 2):
                raise ValueError(f"start came with {len(fds)} descriptors")
            argv, env, cwd = _checked(msg)
            folder = _folder(cwd)
        except ValueError as exc:
            return {"ok": False, "refused": "invalid", "error": str(exc)}
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(report_r)
            os.close(report_w)
            os.close(folder)
            return {"ok": False, "refused": "exhausted" if exc.errno == errno.EAGAIN else "",
                    "error": f"could not fork: {exc.strerror} (the instance's process limit?)"}
        if pid == 0:
            self.chan.close()
            os.close(report_r)
            _child(argv, env, folder, fds, report_w)
        os.close(report_w)
        os.close(folder)
        with os.fdopen(report_r, "rb") as report:
            failure = report.read(512).decode("utf-8", "replace")  # empty once exec closed it
        if failure:
            os.waitpid(pid, 0)
            stage, code, text = (failure.split(":", 2) + ["", ""])[:3]
            missing = stage == "exec" and code == str(errno.ENOENT)
            what = "no program" if missing else "could not start"
            return {"ok": False, "refused": "missing" if missing else "invalid", "error": f"{what} {text}"}
        self.running.add(pid)
        return {"ok": True, "pid": pid}

    def signal(self, msg: dict[str, Any]) -> dict[str, Any]:
        pid, signum = msg.get("pid"), msg.get("signal")
        if not isinstance(pid, int) or pid not in self.running or not isinstance(signum, int) or not 0 < signum < 65:
            return {"ok": False, "refused": "invalid", "error": "no such running process, or no such signal"}
        try:
            if msg.get("group") is True:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)
        except ProcessLookupError:
            pass  # it is ending; its exit is reported
        return {"ok": True}

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self.running:
                continue
            self.running.discard(pid)
            event: dict[str, Any] = {"ev": "exit", "pid": pid}
            if os.WIFSIGNALED(status):
                event["signal"] = os.WTERMSIG(status)
            else:
                event["code"] = os.WEXITSTATUS(status)
            _wire.send(self.chan, event)

    def serve(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        with selectors.DefaultSelector() as sel:
            sel.register(self.chan, selectors.EVENT_READ, "chan")
            sel.register(wake_r, selectors.EVENT_READ, "wake")
            while True:
                for key, _ in sel.select():
                    if key.data == "wake":
                        try:
                            os.read(wake_r, 4096)
                        except BlockingIOError:
                            pass
                        self.reap()
                        continue
                    try:
                        msg, fds, _ = _wire.recv(self.chan)
                    except (_wire.ChannelClosed, OSError, ValueError):
                        return
                    try:
                        self.answer(msg, fds)
                    finally:
                        for fd in fds:
                            os.close(fd)

    def answer(self, msg: Any, fds: list[int]) -> None:
        op = msg.get("op") if isinstance(msg, dict) else None
        seq = msg.get("seq") if isinstance(msg, dict) else None
        if op == "start":
            reply = self.start(msg, fds)
        elif op == "signal":
            reply = self.signal(msg)
        else:
            reply = {"ok": False, "error": f"the supervisor does not answer {op!r}"}
        _wire.send(self.chan, {**reply, "seq": seq})

    def end(self) -> None:
        for pid in self.running:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def serve(chan: socket.socket, key: str) -> None:
    """Run as the supervisor (called in the grandchild of the instance's interpreter; never returns)."""
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        quiet = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(quiet, fd)
        os.close(quiet)
        gc.freeze()  # the interpreter's objects stay shared with the instance's pages
        chan.setblocking(True)
        _wire.send_hello(chan, {"hello": key})
        supervisor = Supervisor(chan)
        try:
            supervisor.serve()
        finally:
            supervisor.end()
    finally:
        os._exit(0)
