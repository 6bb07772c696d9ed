"""The daemon's side of an instance's long-lived processes (StartProcess and the RPCs after it).

Each instance gets, at its first StartProcess, a supervisor inside its sandbox (see ``_procman``) with a
channel of its own: processes start and are signalled while the instance runs code. The daemon makes
every pipe itself and hands the supervisor only the sandbox's ends, so:

* output is read from the daemon's own non-blocking read ends on the event loop (one read of at most
  READ_CHUNK per wake-up, so a flood takes its turn with every other call), kept per process up to the
  cap (``ProcessSettings.output_cap``, oldest dropped first) with its total size;
* stdin is written to the daemon's own non-blocking write end; what the process has not taken yet is
  kept up to ``stdin_pending`` bytes, and a write past it is RESOURCE_EXHAUSTED, never a wait;
* no descriptor the sandbox can change the mode of is ever read or written here.

Nothing the supervisor sends is trusted (the tenant can replace it): every frame must answer a request
still waiting (once) or report the exit of a pid a start reply named, and anything else is a protocol
error. A supervisor that breaks the protocol, or does not answer a request (its turn to send, the send and
the reply together) within REQUEST_TIMEOUT_S, is lost: killed through its pidfd (a stopped one too), its
processes dying with it (PDEATHSIG). At most MAX_IN_FLIGHT requests of an instance wait on it (past it
RESOURCE_EXHAUSTED), and a request's pipes are made only once it is its turn to send, so waiting calls
hold no descriptors. Processes end with their instance (its cgroup); a process's output is read for
``drain_s`` after it exits, then closed even if something it left running holds the pipe. What output is
kept is bounded per process, per instance and for the daemon (``OutputBudget``); at most
MAX_READERS_PER_PROCESS output streams are open on a process and MAX_READERS_PER_INSTANCE on an instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal as signals
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from worldrt import errors as err
from worldrt.providers.sandbox import _workspace
from worldrt.providers.sandbox._output import OutputBudget, OutputLog
from worldrt.providers.sandbox._process import ChannelClosed, ProtocolError, SandboxError, SandboxProcess

MIB = 1024 * 1024
READ_CHUNK = 256 * 1024
_F_SETPIPE_SZ = 1031
REQUEST_TIMEOUT_S = 10.0
# Requests an instance may have waiting on its supervisor at once (past it RESOURCE_EXHAUSTED); also the
# bound on exits that may come before their start is registered.
MAX_IN_FLIGHT = 64
# Ids of forgotten processes remembered, per process kept (for a NotFound that says so, and so an id is
# not reused soon); older ones answer a plain NotFound and may be used again.
_REMEMBERED_PER_KEPT = 64
_MAX_ORPHANS = 1024
# Output streams (ReadProcessOutput) open at once on one process, and on all of an instance's.
MAX_READERS_PER_PROCESS = 8
MAX_READERS_PER_INSTANCE = 32
_MAX_ID = 128
_MAX_ARGV_BYTES = 1 * MIB
_PID_MAX = 1 << 22


@dataclass(frozen=True)
class ProcessSettings:
    """The daemon's options for processes (``--set process_output_mb=...`` and so on)."""

    output_cap: int = 16 * MIB
    stdin_pending: int = 1 * MIB
    drain_s: float = 2.0
    kept_ended: int = 64
    # What an instance's processes keep together, and every process of the daemon (see OutputBudget).
    instance_output: int = 64 * MIB
    total_output: int = 512 * MIB

    @classmethod
    def from_values(cls, values: dict[str, str]) -> ProcessSettings:
        try:
            settings = cls(output_cap=int(float(values.get("process_output_mb", 16)) * MIB),
                           stdin_pending=int(float(values.get("process_stdin_kb", 1024)) * 1024),
                           drain_s=float(values.get("process_drain_s", 2.0)),
                           kept_ended=int(values.get("processes_kept", 64)),
                           instance_output=int(float(values.get("process_output_instance_mb", 64)) * MIB),
                           total_output=int(float(values.get("process_output_total_mb", 512)) * MIB))
        except ValueError as exc:
            raise err.InvalidArgument(f"a process option is not a number: {exc}") from None
        if settings.output_cap < MIB or settings.stdin_pending < 4096 or settings.drain_s < 0 or \
                settings.kept_ended < 1 or settings.instance_output < MIB or settings.total_output < MIB:
            raise err.InvalidArgument("process_output_mb, process_output_instance_mb and process_output_total_mb "
                                      "must be at least 1, process_stdin_kb at least 4, process_drain_s not "
                                      "negative and processes_kept at least 1")
        return settings


def _nonblocking_pipe(*, ours: str, size: int = 0) -> tuple[int, int, int]:
    """(the daemon's end, the sandbox's end, and the pipe's read end) of a new pipe; only the daemon's
    end is non-blocking (each end is its own open file, so the sandbox cannot change ours)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    if size:
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, size)
    mine, theirs = (read_end, write_end) if ours == "read" else (write_end, read_end)
    os.set_blocking(mine, False)
    return mine, theirs, read_end


class Stdin:
    """The write end of a process's stdin, fed from a bounded queue of accepted bytes."""

    def __init__(self, fd: int, bound: int, who: str) -> None:
        self.fd: int | None = fd
        self.bound = bound
        self.who = who
        self.accepted = 0
        self.pending = bytearray()
        self.eof = False
        self.broken = ""
        self._watching = False

    @property
    def closed(self) -> bool:
        return self.fd is None

    def write(self, offset: int, data: bytes, eof: bool) -> None:
        if offset < 0:
            raise err.InvalidArgument("offset must not be negative")
        if offset > self.accepted:
            raise err.OutOfRange(f"stdin of {self.who} has {self.accepted} bytes so far: write at offset "
                                 f"{self.accepted}, not {offset}")
        fresh = data[self.accepted - offset:]
        if self.eof or self.fd is None:
            if not fresh:
                return  # a retry of what was applied already, eof included
            raise err.FailedPrecondition(f"stdin of {self.who} is closed"
                                         f"{': ' + self.broken if self.broken else ' (eof was written)'}")
        if len(self.pending) + len(fresh) > self.bound:
            raise err.ResourceExhausted(
                f"{self.who} has not read {len(self.pending)} bytes of its stdin yet; {len(fresh)} more would pass "
                f"the daemon's bound of {self.bound} bytes. Nothing was applied: write again (at offset "
                f"{self.accepted}) once it reads")
        self.pending += fresh
        self.accepted += len(fresh)
        self.eof = eof
        self._flush()

    def _flush(self) -> None:
        if self.fd is None:
            return
        while self.pending:
            try:
                sent = os.write(self.fd, self.pending[:READ_CHUNK])
            except BlockingIOError:
                break
            except OSError as exc:  # EPIPE: the process closed its stdin or ended
                self.close(f"the process no longer reads it ({exc.strerror})")
                return
            del self.pending[:sent]
        loop = asyncio.get_running_loop()
        if self.pending and not self._watching:
            loop.add_writer(self.fd, self._flush)
            self._watching = True
        elif not self.pending:
            if self._watching:
                loop.remove_writer(self.fd)
                self._watching = False
            if self.eof:
                self.close("")

    def close(self, why: str) -> None:
        if self.fd is None:
            return
        if self._watching:
            asyncio.get_running_loop().remove_writer(self.fd)
            self._watching = False
        os.close(self.fd)
        self.fd = None
        self.pending.clear()
        self.broken = why


@dataclass
class Process:
    id: str
    argv: list[str]
    tag: str
    cwd: str
    output: OutputLog
    stdin: Stdin | None
    pid: int = 0
    started_at: float = field(default_factory=time.time)
    ended_at: float = 0.0
    state: str = "running"  # running, exited, killed, timed_out
    exit_code: int = 0
    signal: int = 0
    reason: str = ""
    timed_out: bool = False
    readers: dict[str, int] = field(default_factory=dict)
    reading: int = 0  # output streams open on it
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state == "running"


class ProcessTable:
    """The processes of one instance."""

    def __init__(self, instance_id: str, settings: ProcessSettings,
                 open_supervisor: Callable[[str], Awaitable[SandboxProcess]], budget: OutputBudget) -> None:
        self.instance_id = instance_id
        self.settings = settings
        self.budget = budget
        self._open_supervisor = open_supervisor
        self.processes: dict[str, Process] = {}
        self._by_pid: dict[int, Process] = {}
        self._early_exits: dict[int, dict[str, Any]] = {}
        self._supervisor: SandboxProcess | None = None
        self._listening: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self._sending = asyncio.Lock()
        self._seq = 0
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._starts: set[int] = set()  # the seqs of requests that are starts
        self._answered: set[int] = set()  # pids a start reply named, not registered yet
        self._orphans: set[int] = set()  # pids a start reply named after its caller had gone
        self._in_flight = 0
        self._reading = 0
        self._closed = ""
        self._lost = ""
        self._forgotten: OrderedDict[str, None] = OrderedDict()

    # lookups ---------------------------------------------------------------------------------------
    def get(self, process_id: str) -> Process:
        proc = self.processes.get(process_id)
        if proc is not None:
            return proc
        if process_id in self._forgotten:
            raise err.NotFound(f"process {process_id} of instance {self.instance_id} ended and was forgotten: an "
                               f"instance keeps its last {self.settings.kept_ended} ended processes")
        raise err.NotFound(f"no process {process_id!r} in instance {self.instance_id}")

    def running_ids(self) -> list[str]:
        return [p.id for p in self.processes.values() if p.running]

    def all(self) -> list[Process]:
        return sorted(self.processes.values(), key=lambda p: p.started_at)

    # the supervisor --------------------------------------------------------------------------------
    async def _channel(self) -> SandboxProcess:
        async with self._opening:
            if self._closed:
                raise err.FailedPrecondition(f"instance {self.instance_id} is stopped: {self._closed}")
            if self._supervisor is None:
                self._supervisor = await self._open_supervisor(f"{self.instance_id}/processes")
                self._listening = asyncio.create_task(self._listen(self._supervisor))
            return self._supervisor

    async def _request(self, msg: dict[str, Any],
                       make_fds: Callable[[], list[int]] | None = None) -> tuple[dict[str, Any], SandboxProcess]:
        """Send ``msg`` (with the descriptors ``make_fds`` makes once it is this request's turn to send) and
        wait for its reply: (the reply, the supervisor that answered). The wait for the turn, the send and
        the reply together get REQUEST_TIMEOUT_S; past it the supervisor is lost (killed)."""
        if self._in_flight >= MAX_IN_FLIGHT:
            raise err.ResourceExhausted(
                f"instance {self.instance_id} has {self._in_flight} process requests waiting for its supervisor "
                f"already (at most {MAX_IN_FLIGHT}): try again once they are answered")
        self._in_flight += 1
        try:
            sup = await self._channel()
            self._seq += 1
            seq = self._seq
            reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._replies[seq] = reply
            if msg.get("op") == "start":
                self._starts.add(seq)
            try:
                sending = False
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    async with self._sending:
                        sending = True
                        await sup.send({**msg, "seq": seq}, make_fds() if make_fds is not None else None)
                        sending = False
                    return await reply, sup
            except asyncio.CancelledError:
                if sending and sup.mid_frame:  # cut off mid-frame: what the supervisor would read next is garbage
                    self._lose(sup, "a request to its supervisor was cut off part-way (its caller went away)")
                raise
            except TimeoutError:
                self._lose(sup, f"its supervisor did not answer within {REQUEST_TIMEOUT_S:.0f} s and was killed, "
                                    f"its processes with it")
                raise err.Unavailable(f"the process supervisor of instance {self.instance_id} did not answer in "
                                      f"time: it was killed, and its processes with it") from None
            except (ChannelClosed, OSError) as exc:
                if self._closed:
                    raise err.FailedPrecondition(f"instance {self.instance_id} ended while the request waited: "
                                                 f"{self._closed}", reason=err.Reason.INSTANCE_GONE) from None
                self._lose(sup, f"its supervisor's channel closed ({exc})")
                raise err.Unavailable(f"the process supervisor of instance {self.instance_id} is gone; its "
                                      f"processes ended with it; start them again") from None
            finally:
                self._replies.pop(seq, None)
                self._starts.discard(seq)
        finally:
            self._in_flight -= 1

    async def _listen(self, sup: SandboxProcess) -> None:
        why = "its supervisor ended"
        try:
            while True:
                frame, _ = await sup.recv()
                self._on_frame(frame, sup.key)
        except ProtocolError as exc:
            why = f"its supervisor broke the protocol: {exc}"
        except (ChannelClosed, OSError, SandboxError):
            pass
        self._lose(sup, why)

    def _on_frame(self, frame: dict[str, Any], who: str) -> None:
        if frame.get("ev") == "exit":
            pid = frame.get("pid")
            if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < _PID_MAX:
                raise ProtocolError(f"{who} sent an exit without a pid")
            code, sig = frame.get("code"), frame.get("signal")
            if not (isinstance(code, int) and 0 <= code <= 255 and sig is None) and \
                    not (isinstance(sig, int) and 0 < sig < 65 and code is None):
                raise ProtocolError(f"{who} sent an exit with neither an exit code nor a signal")
            proc = self._by_pid.pop(pid, None)
            if proc is not None:
                self._ended(proc, code, sig, "")
            elif pid in self._answered and len(self._early_exits) < MAX_IN_FLIGHT:
                # its start's reply is in, its caller not yet back to register it
                self._answered.discard(pid)
                self._early_exits[pid] = frame
            elif pid in self._orphans:
                self._orphans.discard(pid)
            else:
                raise ProtocolError(f"{who} reported the exit of pid {pid}, which it did not start (or did not "
                                    f"start again)")
            return
        seq = frame.get("seq")
        waiter = self._replies.get(seq) if isinstance(seq, int) else None
        if waiter is None or (waiter.done() and not waiter.cancelled()):
            raise ProtocolError(f"{who} sent a frame nobody asked for")
        pid = frame.get("pid") if seq in self._starts and frame.get("ok") is True else None
        if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < _PID_MAX:
            pid = None
        if not waiter.cancelled():
            waiter.set_result(frame)
            if pid is not None:
                self._answered.add(pid)
        elif pid is not None and len(self._orphans) < _MAX_ORPHANS:
            # its caller went away after asking: nobody will know of it, so it is ended now
            self._orphans.add(pid)
            task = asyncio.ensure_future(self._request({"op": "signal", "pid": pid, "signal": signals.SIGKILL,
                                                        "group": True}))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _lose(self, sup: SandboxProcess, why: str) -> None:
        """The supervisor is gone (or no longer trusted, or stopped answering): it is killed (through its
        pidfd, so a stopped one too) and its processes die with it (PDEATHSIG)."""
        if self._supervisor is not sup:
            return
        self._supervisor = None
        self._lost = why
        sup.kill()
        sup.close()
        self._answered.clear()
        self._orphans.clear()
        self._early_exits.clear()
        for waiter in self._replies.values():
            if not waiter.done():
                waiter.set_exception(ChannelClosed(why))
        for proc in list(self._by_pid.values()):
            self._ended(proc, None, signals.SIGKILL, why)
        self._by_pid.clear()

    # processes -------------------------------------------------------------------------------------
    async def start(self, argv: list[str], env: dict[str, str], cwd: str, stdin: bool, timeout_ms: int, tag: str,
                    process_id: str) -> Process:
        _check_start(argv, env, cwd, tag, process_id)
        process_id = process_id or f"p-{secrets.token_hex(6)}"
        if process_id in self.processes or process_id in self._forgotten:
            raise err.AlreadyExists(f"instance {self.instance_id} has a process {process_id} already: choose "
                                    f"another id")
        ours: dict[str, int] = {}
        theirs: list[int] = []

        def pipes() -> list[int]:  # made once it is this start's turn to send, so a waiting call holds none
            for name, size in (("stdout", MIB), ("stderr", 0)):
                mine, other, _ = _nonblocking_pipe(ours="read", size=size)
                ours[name] = mine
                theirs.append(other)
            if stdin:
                mine, other, _ = _nonblocking_pipe(ours="write")
                ours["stdin"] = mine
                theirs.append(other)
            return theirs

        try:
            reply, sup = await self._request(
                {"op": "start", "argv": argv, "env": env, "cwd": cwd, "stdin": stdin}, pipes)
        except BaseException:
            for fd in ours.values():
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        if reply.get("ok") is not True:
            for fd in ours.values():
                os.close(fd)
            raise _refusal(reply, self.instance_id)
        pid = reply.get("pid")
        if isinstance(pid, int):
            self._answered.discard(pid)
        if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < _PID_MAX or pid in self._by_pid:
            for fd in ours.values():
                os.close(fd)
            raise err.Aborted(f"the process supervisor of instance {self.instance_id} answered start without a "
                              f"valid pid")
        who = f"process {process_id}"
        where = os.path.normpath(os.path.join("/workspace", cwd))
        proc = Process(process_id, argv, tag, where, OutputLog(self.settings.output_cap, self.budget, self.instance_id),
                       Stdin(ours.pop("stdin"), self.settings.stdin_pending, who) if stdin else None, pid=pid)
        self.processes[process_id] = proc
        self._by_pid[pid] = proc
        loop = asyncio.get_running_loop()
        for name, fd in ours.items():
            proc.readers[name] = fd
            loop.add_reader(fd, self._readable, proc, name)
        if timeout_ms:
            proc.timers.append(loop.call_later(timeout_ms / 1000, self._time_out, proc))
        early = self._early_exits.pop(pid, None)
        if early is not None:
            self._by_pid.pop(pid, None)
            self._ended(proc, early.get("code"), early.get("signal"), "")
        elif sup is not self._supervisor:  # lost between its reply and now
            self._by_pid.pop(pid, None)
            self._ended(proc, None, signals.SIGKILL, self._lost)
        self._forget_old()
        return proc

    def _readable(self, proc: Process, name: str) -> None:
        fd = proc.readers.get(name)
        if fd is None:
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            proc.output.append(name, data)
        else:
            self._stop_reading(proc, name)

    def _stop_reading(self, proc: Process, name: str) -> None:
        fd = proc.readers.pop(name, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        proc.output.end(name)

    def _drain(self, proc: Process) -> None:
        """``drain_s`` after its exit: take what its pipes hold now, then stop reading them (what it left
        running may hold them open forever)."""
        for name in list(proc.readers):
            fd = proc.readers[name]
            for _ in range(64):
                try:
                    data = os.read(fd, READ_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                proc.output.append(name, data)
            self._stop_reading(proc, name)

    def _time_out(self, proc: Process) -> None:
        if not proc.running:
            return
        proc.timed_out = True
        task = asyncio.ensure_future(self._send_signal(proc, signals.SIGKILL, group=True))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _ended(self, proc: Process, code: int | None, sig: int | None, reason: str) -> None:
        if not proc.running:
            return
        proc.ended_at = time.time()
        proc.reason = reason
        if sig is not None:
            proc.signal = sig
            proc.state = "timed_out" if proc.timed_out else "killed"
        else:
            proc.exit_code = code or 0
            proc.state = "exited"
        for timer in proc.timers:
            timer.cancel()
        proc.timers = [asyncio.get_running_loop().call_later(self.settings.drain_s, self._drain, proc)]
        self.budget.ended(proc.output)
        if proc.stdin is not None:
            proc.stdin.close("the process ended")
        if not proc.done.done():
            proc.done.set_result(None)

    def _forget_old(self) -> None:
        ended = [p for p in self.all() if not p.running and p.output.ended]
        for proc in ended[:max(0, len(ended) - self.settings.kept_ended)]:
            del self.processes[proc.id]
            proc.output.release()
            self._forgotten[proc.id] = None
            if len(self._forgotten) > _REMEMBERED_PER_KEPT * self.settings.kept_ended:
                self._forgotten.popitem(last=False)

    async def _send_signal(self, proc: Process, signum: int, *, group: bool) -> None:
        if not proc.running:
            return
        reply, _ = await self._request({"op": "signal", "pid": proc.pid, "signal": signum, "group": group})
        if reply.get("ok") is not True and proc.running:
            raise _refusal(reply, self.instance_id)

    async def signal(self, process_id: str, signum: int, leader_only: bool) -> Process:
        proc = self.get(process_id)
        signum = signum or signals.SIGKILL
        if not 0 < signum < 65:
            raise err.InvalidArgument(f"signal must be a signal number between 1 and 64 (0 for SIGKILL), got {signum}")
        await self._send_signal(proc, signum, group=not leader_only)
        return proc

    async def wait(self, process_id: str, timeout_ms: int) -> Process:
        proc = self.get(process_id)
        if timeout_ms and proc.running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_ms / 1000):
                    await asyncio.shield(proc.done)
        return proc

    def write_stdin(self, process_id: str, offset: int, data: bytes, eof: bool) -> Stdin:
        proc = self.get(process_id)
        if proc.stdin is None:
            raise err.FailedPrecondition(f"process {process_id} was started without stdin (StartProcess stdin=true "
                                         f"pipes it)")
        proc.stdin.write(offset, data, eof)
        return proc.stdin

    async def read(self, process_id: str, streams: list[str], offsets: dict[str, int],
                   no_wait: bool) -> AsyncIterator[tuple[str, int, bytes, bool]]:
        """(stream, offset, data, eof) chunks from ``offsets`` on, until the streams end (or, with
        ``no_wait``, until what is kept now is sent)."""
        proc = self.get(process_id)
        if proc.reading >= MAX_READERS_PER_PROCESS or self._reading >= MAX_READERS_PER_INSTANCE:
            raise err.ResourceExhausted(
                f"{'process ' + process_id if proc.reading >= MAX_READERS_PER_PROCESS else 'instance ' + self.instance_id}"
                f" has as many output streams open as it may ({MAX_READERS_PER_PROCESS} a process, "
                f"{MAX_READERS_PER_INSTANCE} an instance): read on one of them, or close one first")
        proc.reading += 1
        self._reading += 1
        try:
            async for item in self._read(proc, streams, offsets, no_wait):
                yield item
        finally:
            proc.reading -= 1
            self._reading -= 1

    async def _read(self, proc: Process, streams: list[str], offsets: dict[str, int],
                    no_wait: bool) -> AsyncIterator[tuple[str, int, bytes, bool]]:
        position = dict(offsets)
        open_streams = list(streams)
        while open_streams:
            progressed = False
            for name in list(open_streams):
                log = proc.output.stream(name)
                try:
                    data = log.read(position[name])
                except err.OutOfRange as exc:
                    exc.trailers = (("x-worldrt-first-offset",
                                     f"stdout={proc.output.stdout.first},stderr={proc.output.stderr.first}"),)
                    raise
                if data:
                    yield name, position[name], data, False
                    position[name] += len(data)
                    progressed = True
                elif log.ended:
                    yield name, position[name], b"", True
                    open_streams.remove(name)
                    progressed = True
            if not progressed:
                if no_wait:
                    return
                await asyncio.shield(proc.output.changed())  # one reader that leaves must not end the wait of the others

    # the end ---------------------------------------------------------------------------------------
    def close(self, reason: str) -> None:
        """The instance ended (its cgroup killed every process of it): end every record and release."""
        self._closed = reason
        if self._listening is not None:
            self._listening.cancel()
        sup, self._supervisor = self._supervisor, None
        if sup is not None:
            sup.close()
        for waiter in self._replies.values():
            if not waiter.done():
                waiter.set_exception(ChannelClosed(reason))
        for proc in self.processes.values():
            self._ended(proc, None, signals.SIGKILL, f"the instance ended: {reason}")
            for timer in proc.timers:
                timer.cancel()
            self._drain(proc)
            if proc.stdin is not None:
                proc.stdin.close("the instance ended")
        self._by_pid.clear()
        self.budget.forget(self.instance_id)


def _check_start(argv: list[str], env: dict[str, str], cwd: str, tag: str, process_id: str) -> None:
    if not argv or not argv[0]:
        raise err.InvalidArgument("argv must name a program (argv[0]), like [\"python\", \"-m\", \"http.server\"]")
    if any("\0" in a for a in argv) or sum(len(a.encode("utf-8", "replace")) for a in argv) > _MAX_ARGV_BYTES:
        raise err.InvalidArgument(f"argv must hold no NUL and at most {_MAX_ARGV_BYTES} bytes")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key + value:
            raise err.InvalidArgument(f"env name {key[:40]!r} must be non-empty without '=' or NUL, its value "
                                      f"without NUL")
    if cwd.startswith("/"):
        if "\0" in cwd or len(cwd.encode("utf-8", "replace")) > 4096:
            raise err.InvalidArgument("cwd must be a path without NUL, at most 4096 bytes")
    else:
        _workspace.check_path(cwd, empty=True)  # walked within the workspace by the supervisor, as Execute's is
    if len(tag) > 1024:
        raise err.InvalidArgument("tag must be at most 1024 characters")
    if process_id and (len(process_id) > _MAX_ID or not all(c.isalnum() or c in "-_." for c in process_id)):
        raise err.InvalidArgument(f"process_id must be at most {_MAX_ID} letters, digits, '-', '_' or '.'")


def _refusal(reply: dict[str, Any], instance_id: str) -> err.WorldError:
    error = reply.get("error")
    text = error[:1000] if isinstance(error, str) else f"the process supervisor of {instance_id} refused"
    kinds: dict[Any, type[err.WorldError]] = {"invalid": err.InvalidArgument, "missing": err.NotFound,
                                              "exhausted": err.ResourceExhausted}
    return kinds.get(reply.get("refused"), err.FailedPrecondition)(text)
