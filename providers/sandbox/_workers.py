"""Sandboxed function workers: fresh interpreters that run one program's functions, each call with a timeout.

A ``WorkerPool`` owns one bubblewrap sandbox. When it opens, it spawns a template member, imports what
programs commonly need (numpy) and freezes it as a snapshot. The template never runs a program.
``pool.lease(size, program)`` forks ``size`` workers from the frozen template, each born in namespaces of
its own under a uid of its own (like a branch): workers of one lease cannot reach each other, another
lease's workers or the template. The lease loads (compiles) the program into each and kills them when the
request ends: nothing a program does outlives its request. ``lease.call(function, args, timeout_s)`` runs
``function(*args)`` in a fresh namespace of the program (its top level runs again, so module state does
not carry over between calls), with JSON arguments and a JSON result. A program may compile a source through
``__worldrt_compile__``, a cache of code objects kept for the worker's life (code objects hold no state).
A pool's ``preludes`` are sources its programs commonly begin with (the optimizer's GRPO core), compiled
once in the template: a program that begins with one compiles only the rest, when that cannot change what
the program means (the rest compiles alone under the prelude's future flags, at its own line numbers, and
neither declares a global nor imports from ``__future__`` nor has a docstring); any other compiles whole.
A call past its timeout is interrupted and its worker replaced; so is a worker that dies. A template that stops answering is
replaced with a fresh sandbox, and the pool counts and reports it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from worldrt.errors import DeadlineExceeded, ErrorFamily, InvalidArgument, Unavailable
from worldrt.providers.sandbox import _frames
from worldrt.providers.sandbox._branches import Lineage, ReadyBranches, ReadyBudget
from worldrt.providers.sandbox._cgroup import Cgroups
from worldrt.providers.sandbox._images import DEFAULT, ImageStore
from worldrt.providers.sandbox._process import (
    ChannelClosed,
    ProtocolError,
    SandboxError,
    SandboxFault,
    SandboxProcess,
)
from worldrt.providers.sandbox._readiness import ready
from worldrt.providers.sandbox._sandbox import Limits, Sandbox
from worldrt.providers.sandbox._uids import ALLOCATOR

log = logging.getLogger("worldrt.sandbox")
INTERRUPT_GRACE_S = 0.5
FORK_TIMEOUT_S = 15.0
MAX_CALL_OUTPUT = 2 * 1024 * 1024 + 64 * 1024
_STDERR_TAIL = 2000

# Runs once in the template instance; every worker is a fork of it.
_BOOTSTRAP = r'''
import __future__ as _future
import functools as _functools
import json as _json
import importlib as _importlib

for _name in _WORLDRT_PRELOAD:
    try:
        _importlib.import_module(_name)
    except ImportError:
        pass
if "numpy" in _WORLDRT_PRELOAD:
    try:
        import numpy as _np

        _np.random.seed(0)  # its first seeding costs ~10 ms; pay it here, not in every fork (which reseeds)
    except ImportError:
        pass


_FUTURES = 0
for _feature in _future.all_feature_names:
    _FUTURES |= getattr(_future, _feature).compiler_flag


class _WorldrtWorker:
    def __init__(self, preludes):
        self.programs = {}
        # Offered to programs as __worldrt_compile__: a code object is immutable, so a source compiled
        # on every call (an objective per rollout) is compiled once in this worker.
        self.compile = _functools.lru_cache(maxsize=16)(compile)
        self.preludes = []
        for source in preludes:
            code = compile(source, "<program>", "exec", dont_inherit=True)
            self.preludes.append((source, code, code.co_flags & _FUTURES, source.count("\n")))

    def load(self, key, source):
        self.programs[key] = self._codes(source)

    def _codes(self, source):
        for prelude, code, futures, lines in self.preludes:
            if source.startswith(prelude):
                tail = self._rest(source[len(prelude):], futures, lines)
                if tail is not None:
                    return (code, tail)
                break
        return (compile(source, "<program>", "exec", dont_inherit=True),)

    def _rest(self, rest, futures, lines):
        """The rest compiled alone, or None where alone it could mean something else (or does not compile:
        compiled whole, it gives the error a whole program gives)."""
        if "__future__" in rest or "global" in rest:
            return None
        try:
            tail = compile("\n" * lines + rest, "<program>", "exec", flags=futures, dont_inherit=True)
        except (SyntaxError, ValueError):
            return None
        return None if "__doc__" in tail.co_names else tail

    def call(self, key, function, args_json):
        namespace = {"__name__": "__worldrt_program__", "__worldrt_compile__": self.compile}
        for code in self.programs[key]:
            exec(code, namespace)
        fn = namespace.get(function)
        if not callable(fn):
            raise NameError(f"the program does not define a function {function}()")
        result = fn(*_json.loads(args_json))
        try:
            return _json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{function}() returned a value that is not JSON: {exc}") from None


__worldrt__ = _WorldrtWorker(_WORLDRT_PRELUDES)

import gc as _gc

_gc.collect()
_gc.freeze()  # forks of this process then leave its objects' pages shared
'''


class WorkerFault(ErrorFamily):
    """The family of what keeps a call on a sandboxed worker from producing a result, whatever its kind:
    catch this to catch them all (WorkerError, ProgramError, CallError, CallTimeout, WorkerLost)."""


class WorkerError(WorkerFault, Unavailable):
    """A call on a sandboxed worker did not produce a result; the message says why."""


class ProgramError(WorkerFault, InvalidArgument):
    """The program does not compile."""


class CallError(WorkerError):
    """The function (or the program's top level) raised; ``error`` is ``Type: message``."""

    def __init__(self, error: str, stderr: str) -> None:
        super().__init__(error)
        self.error = error
        self.stderr = stderr


class CallTimeout(WorkerFault, DeadlineExceeded):
    """The call ran past its timeout; its worker was stopped and replaced."""


class WorkerLost(WorkerError):
    """The worker process died during the call (a limit, or the program ended its own process)."""


class _Tail:
    """The last characters a call wrote to stderr, for error messages."""

    def __init__(self) -> None:
        self.text = ""

    def add(self, stream: str, text: str) -> None:
        if stream == "stderr":
            self.text = (self.text + text)[-_STDERR_TAIL:]


async def _exec(proc: SandboxProcess, code: str, tail: _Tail) -> dict[str, Any]:
    """Run ``code`` in a worker; its checked ``done`` frame. Output events go to ``tail``."""
    await proc.send({"op": "exec", "code": code, "language": "python", "env": {}})
    written = 0
    while True:
        frame, _ = await proc.recv()
        event, payload = _frames.output_or_done(frame, f"worker {proc.key}")
        if event == "done":
            return payload  # type: ignore[no-any-return]
        written += len(payload)
        if written > MAX_CALL_OUTPUT:
            raise ProtocolError(f"worker {proc.key} wrote more than {MAX_CALL_OUTPUT} characters of output")
        tail.add(event, payload)


class WorkerPool:
    """One sandbox whose frozen template process is forked into fresh, isolated workers, a lease at a time."""

    def __init__(self, state_dir: Path, *, name: str = "workers", limits: Limits | None = None,
                 preload: tuple[str, ...] = ("numpy",), preludes: tuple[str, ...] = (), ready_workers: int = 4,
                 fork_timeout_s: float = FORK_TIMEOUT_S, images: ImageStore | None = None) -> None:
        self.fork_timeout_s = fork_timeout_s
        # Workers run from the default image (the standard library and numpy).
        self.images = images or ImageStore.beside(state_dir)
        self.state_dir = state_dir
        self.name = name
        self.limits = limits or Limits()
        self.preload = preload
        for prelude in preludes:
            if not prelude.endswith("\n"):
                raise ValueError("a prelude ends with a newline: the program's rest begins on a line of its own")
        self.preludes = preludes
        self.ready_workers = ready_workers
        self.template_restarts = 0
        self.last_template_failure = ""
        self._sandbox: Sandbox | None = None
        self._template: SandboxProcess | None = None
        self._ready: ReadyBranches | None = None
        self._cgroups = Cgroups("unopened", [])
        self._uids: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._retiring: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._cgroups = Cgroups.open(f"worldrt-{os.getpid()}-{self.name}")
        await asyncio.to_thread(self.images.prepare)
        async with self._lock:
            await self._start()

    async def close(self) -> None:
        self._closed = True
        await self.settle()
        async with self._lock:
            await self._end()
            await asyncio.to_thread(self._cgroups.close)

    @property
    def isolation(self) -> dict[str, Any]:
        return {"sandbox": "bubblewrap", "network": "none", "system_dirs": "read-only",
                "per_worker": "user, mount, network and ipc namespaces, a uid and a cgroup of its own",
                "rlimits": {"memory_mb": self.limits.memory_mb, "cpu_s": self.limits.cpu_s},
                "cgroups": self._cgroups.controllers, "fresh_processes_per_request": True,
                "template_restarts": self.template_restarts}

    async def _start(self) -> None:
        image = self.images.resolve(DEFAULT)
        sandbox = await asyncio.to_thread(Sandbox.start, f"{self.name}-{secrets.token_hex(4)}", self.state_dir,
                                          self._cgroups, self.images.layer(image.digest), image.digest)
        uid = ALLOCATOR.take()
        try:
            template = await sandbox.spawn(f"template-{secrets.token_hex(4)}", uid, self.limits)
            sandbox.adopt(template, self.limits.processes, self.limits.cgroup_memory_bytes)
            code = f"_WORLDRT_PRELOAD = {list(self.preload)!r}\n_WORLDRT_PRELUDES = {list(self.preludes)!r}\n{_BOOTSTRAP}"
            frame = await _exec(template, code, _Tail())
            if frame.get("error"):
                raise SandboxError(f"worker bootstrap failed: {frame['error']}")
            sid = f"frozen-{secrets.token_hex(4)}"
            frozen = await _freeze(template, sid)
            sandbox.adopt(frozen, None, None)
            await sandbox.kill(template)
        except BaseException:
            await sandbox.close()
            ALLOCATOR.release(uid)
            raise
        self._sandbox, self._template = sandbox, frozen
        self._uids[frozen.key] = uid
        self._ready = ReadyBranches(sandbox, frozen, Lineage(uid), self.limits, lambda: None,
                                    ReadyBudget(limit=4 * self.ready_workers), target=self.ready_workers)
        self._ready.fill_soon()

    async def _end(self) -> None:
        sandbox, ready, template = self._sandbox, self._ready, self._template
        self._sandbox, self._template, self._ready = None, None, None
        if ready is not None:
            await ready.close()
        if sandbox is not None:
            await sandbox.close()
        if template is not None:
            ALLOCATOR.release(self._uids.pop(template.key))

    async def _restart(self, why: str) -> None:
        self.template_restarts += 1
        self.last_template_failure = why
        log.warning("worker pool %s: replacing its template sandbox (%s); restart %d", self.name, why,
                    self.template_restarts)
        await self._end()
        await self._start()

    async def fork(self, count: int) -> list[SandboxProcess]:
        """``count`` fresh workers, forked from the frozen template (whose sandbox is replaced first if it
        died, and once more if it stops answering)."""
        async with self._lock:
            if self._closed:
                raise WorkerLost("the worker pool is closed")
            if self._sandbox is None or not self._sandbox.alive:
                await self._restart("its sandbox exited")
            try:
                return await self._fork(count)
            except (TimeoutError, ChannelClosed, SandboxFault, OSError) as exc:
                await self._restart(f"the template did not fork workers: {str(exc) or type(exc).__name__}")
                try:
                    return await self._fork(count)
                except (TimeoutError, ChannelClosed, SandboxFault, OSError) as again:
                    raise WorkerLost(f"could not start sandboxed workers: {again}") from again

    async def _fork(self, count: int) -> list[SandboxProcess]:
        ready = self._ready
        assert ready is not None
        async with asyncio.timeout(self.fork_timeout_s):
            workers, errors = await ready.take(count)
        for worker in workers:
            self._uids[worker.proc.key] = worker.lineage.uid
        if len(workers) < count:
            for worker in workers:
                await self.kill(worker.proc)
            raise SandboxError("; ".join(errors[:2]) or "a worker did not come up")
        ready.fill_soon()
        return [w.proc for w in workers]

    async def kill(self, proc: SandboxProcess) -> None:
        sandbox = self._sandbox
        uid = self._uids.pop(proc.key, None)
        if sandbox is not None and proc.key in sandbox.members:
            await (await sandbox.kill(proc))
        else:
            proc.close()
            proc.kill_group()
            await asyncio.to_thread(self._cgroups.kill, proc.key)
        if uid is not None:
            ALLOCATOR.release(uid)

    async def settle(self) -> None:
        """Wait until every retired worker is gone."""
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def retire(self, procs: list[SandboxProcess]) -> None:
        """Close the workers' channels now (a worker exits when its channel closes) and make sure of
        their end in the background."""
        for proc in procs:
            proc.close()

        async def kill_all() -> None:
            await asyncio.gather(*(self.kill(p) for p in procs), return_exceptions=True)

        task = asyncio.create_task(kill_all())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def lease(self, size: int, program: str) -> WorkerLease:
        return WorkerLease(self, size, program)


async def _freeze(template: SandboxProcess, sid: str) -> SandboxProcess:
    """A frozen copy of the template (its disk is empty: the archive it writes is drained and dropped)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)

    async def drain() -> None:
        os.set_blocking(read_end, False)
        while True:
            try:
                if not os.read(read_end, 65536):
                    return
            except BlockingIOError:
                await ready(read_end)

    draining = asyncio.create_task(drain())
    try:
        try:
            await template.send({"op": "snapshot", "snapshot_id": sid}, [write_end])
        finally:
            os.close(write_end)
        reply, fds = await template.recv(max_fds=1)
        _frames.ok(reply, template.key, "snapshot")
        if len(fds) != 1:
            raise SandboxError("the template answered snapshot without a channel")
        async with asyncio.timeout(FORK_TIMEOUT_S):
            await draining
        return await SandboxProcess.from_hello(fds[0], sid)
    finally:
        draining.cancel()
        await asyncio.gather(draining, return_exceptions=True)
        os.close(read_end)


class WorkerLease:
    """Fresh workers for one request, all loaded with one program. Use as ``async with``."""

    def __init__(self, pool: WorkerPool, size: int, program: str) -> None:
        if size < 1:
            raise ValueError("a lease needs at least one worker")
        self.pool = pool
        self.size = size
        self.program = program
        self.key = secrets.token_hex(8)
        self.cpu_ms = 0.0
        self.calls = 0
        self._idle: asyncio.Queue[SandboxProcess] = asyncio.Queue()
        self._live: set[SandboxProcess] = set()
        self._broken: WorkerError | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        try:
            for proc in await self._start(self.size):
                self._idle.put_nowait(proc)
        except BaseException:
            await self._kill_all()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._kill_all()

    async def _start(self, count: int) -> list[SandboxProcess]:
        procs = await self.pool.fork(count)
        self._live.update(procs)
        code = f"__worldrt__.load({self.key!r}, {self.program!r})"

        async def load(proc: SandboxProcess) -> None:
            frame = await _exec(proc, code, _Tail())
            if frame.get("error"):
                raise ProgramError(f"the program does not compile: {frame['error']}")

        try:
            await asyncio.gather(*(load(p) for p in procs))
        except (ChannelClosed, OSError, SandboxFault) as exc:
            raise WorkerLost(f"a worker died while loading the program: {exc}") from exc
        return procs

    async def _kill_all(self) -> None:
        self._closed = True
        procs, self._live = list(self._live), set()
        self.pool.retire(procs)

    async def call(self, function: str, args: list[Any], timeout_s: float) -> Any:
        """``function(*args)`` in a fresh namespace of the program; its JSON result, decoded."""
        if self._closed:
            raise WorkerLost("the lease has ended")
        if self._broken is not None:
            raise self._broken
        proc = await self._idle.get()
        try:
            result = await self._run(proc, function, args, timeout_s)
        except CallError:
            self._idle.put_nowait(proc)
            raise
        except asyncio.CancelledError:
            # The request went away: stop the worker without waiting for it.
            self._live.discard(proc)
            self.pool.retire([proc])
            raise
        except BaseException:
            await self._replace(proc)
            raise
        self._idle.put_nowait(proc)
        return result

    async def _replace(self, proc: SandboxProcess) -> None:
        self._live.discard(proc)
        self.pool.retire([proc])
        if self._closed:
            return
        try:
            (fresh,) = await self._start(1)
        except WorkerFault as exc:
            self._broken = WorkerLost(f"a worker could not be replaced: {exc}")
            return
        self._idle.put_nowait(fresh)

    async def _run(self, proc: SandboxProcess, function: str, args: list[Any], timeout_s: float) -> Any:
        tail = _Tail()
        code = f"__worldrt__.call({self.key!r}, {function!r}, {json.dumps(args, ensure_ascii=False)!r})"
        running = asyncio.ensure_future(_exec(proc, code, tail))
        try:
            frame = await asyncio.wait_for(asyncio.shield(running), timeout_s)
        except TimeoutError:
            proc.signal(signal.SIGINT)
            try:
                await asyncio.wait_for(running, INTERRUPT_GRACE_S)
            except (TimeoutError, ChannelClosed, OSError, SandboxFault):
                pass
            raise CallTimeout(f"{function}() ran past its timeout of {timeout_s * 1000:.0f} ms") from None
        except (ChannelClosed, OSError, SandboxFault) as exc:
            raise WorkerLost(f"the worker died during {function}() ({exc}); "
                             f"a memory or cpu limit, or the program ended its process") from exc
        except asyncio.CancelledError:
            running.cancel()
            raise
        self.calls += 1
        self.cpu_ms += float(frame.get("cpu_ms", 0.0))
        if frame.get("interrupted"):
            raise CallTimeout(f"{function}() was interrupted")
        if frame.get("error"):
            raise CallError(frame["error"], tail.text)
        if not frame.get("value_json"):
            raise CallError(f"{function}() ended without returning a value (exit code {frame.get('exit_code')})",
                            tail.text)
        try:
            return json.loads(json.loads(frame["value_json"]))
        except (TypeError, ValueError, RecursionError):
            raise CallError(f"{function}() returned a value that is not JSON the daemon can read", tail.text) from None
