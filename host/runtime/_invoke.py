"""Run loaded components: one engine and linker (WASI p2 plus the world's imports), a fresh store per
invocation with a wall-clock deadline (epoch interruption) and a memory cap."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from wasmtime import Engine, ExitTrap, Store, WasiConfig, WasmtimeError
from wasmtime.component import Component, Linker, Variant

from worldrt import telemetry
from worldrt.errors import WorldError
from worldrt.host.runtime._components import (
    DEFAULT_CACHE_DIR,
    ComponentCache,
    ComponentLoader,
    LoadedComponent,
    new_engine,
)
from worldrt.host.runtime._errors import (
    ComponentError,
    ComponentTimeout,
    ComponentTrap,
    GuestError,
    InvocationError,
)
from worldrt.host.runtime._exports import call_run, is_run_type
from worldrt.host.runtime._host_functions import (
    InvocationScope,
    LogSink,
    define_imports,
)
from worldrt.host.runtime._log_budget import LogBudget, LogLimits, LogRate
from worldrt.host.runtime._values import ImportCodec
from worldrt.host.runtime._world import CallContext, Operation, Router

log = logging.getLogger("worldrt.host")
OutputSink = Callable[[str, bytes], None]
# What runtimes print when an allocation fails: CPython, SpiderMonkey, Rust's alloc error handler, libc.
_OUT_OF_MEMORY = re.compile(r"MemoryError|out of memory|memory allocation of \d+ bytes failed|Cannot allocate memory",
                            re.IGNORECASE)
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per invocation. ``timeout_s`` is wall-clock time for the whole call, provider calls included;
    ``memory_mb`` caps the component's linear memories together; ``log`` caps what its log calls write
    to the host's log (lines and bytes per invocation; the lines a second of the runtime's own limits hold
    for all its invocations together)."""

    timeout_s: float = 120.0
    memory_mb: int = 512
    log: LogLimits = field(default_factory=LogLimits)


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation (``value`` is its ok string, or its err string on a GuestError),
    with where its time went."""

    value: str
    instantiate_us: float
    call_ms: float
    provider_calls: int
    provider_ms: float


def _cause(error: WasmtimeError) -> str:
    """wasmtime's whole reason on one line: its message and each 'Caused by' entry, without backtraces."""
    parts: list[str] = []
    for raw in str(error).splitlines():
        line = raw.strip()
        if not line or line == "Caused by:":
            continue
        if line.lower().startswith(("stack backtrace", "wasm backtrace")):
            break
        head, sep, rest = line.partition(": ")
        parts.append(rest if sep and head.isdigit() else line)
    return ": ".join(parts) or "unknown error"


class OutputTail:
    """The last ``cap`` bytes a component wrote to one stream (its stderr), for the message of a trap."""

    def __init__(self, cap: int = 4096) -> None:
        self.cap = cap
        self._data = bytearray()

    def add(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > 2 * self.cap:
            del self._data[:-self.cap]

    def lines(self, count: int = 8, width: int = 600) -> str:
        """The last ``count`` non-blank lines, printable, joined with " | " and cut to ``width`` characters."""
        text = bytes(self._data[-self.cap:]).decode("utf-8", "replace")
        kept = ["".join(c if c.isprintable() else "?" for c in line.strip()) for line in text.splitlines()]
        shown = " | ".join([line for line in kept if line][-count:])
        return shown if len(shown) <= width else "…" + shown[-width:]


def _trap_reason(error: WasmtimeError) -> str:
    """The cause of a wasmtime error (the line after 'Caused by:'), without the backtrace."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "Caused by:" in lines:
        after = lines[lines.index("Caused by:") + 1:]
        if after:
            return after[-1].removeprefix("0: ").strip()
    return lines[0] if lines else "unknown error"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _EpochTicker(threading.Thread):
    """Moves the engine's epoch on with the wall clock while invocations run: one tick per ``tick_s``
    elapsed, however late this thread gets to run (on a machine busy with spinning components), so
    deadlines stay wall-clock time. With none running it sleeps: an idle host is not woken 100 times a
    second. A store's deadline counts from the epoch when it was set, so the pause moves no deadline."""

    def __init__(self, engine: Engine, tick_s: float) -> None:
        super().__init__(name="worldrt-epoch", daemon=True)
        self.engine = engine
        self.tick_s = tick_s
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._running = 0
        self._busy = threading.Event()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Tick for as long as this invocation runs."""
        with self._lock:
            self._running += 1
            self._busy.set()
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self._busy.clear()

    def stop(self) -> None:
        self.stopping.set()
        self._busy.set()
        self.join()

    def run(self) -> None:
        while not self.stopping.is_set():
            self._busy.wait()
            last = time.monotonic()
            while self._running and not self.stopping.wait(self.tick_s):
                ticks = max(1, int((time.monotonic() - last) / self.tick_s))
                for _ in range(ticks):
                    self.engine.increment_epoch()
                last += ticks * self.tick_s


class ComponentRuntime:
    """Loads components and invokes their exports; every imported provider call goes to ``router``.

    Thread-safe: invocations on different threads run side by side, each in its own store.
    """

    def __init__(self, router: Router, *, cache_dir: Path | None = DEFAULT_CACHE_DIR, limits: Limits = Limits(),
                 epoch_tick_s: float = 0.01) -> None:
        self.router = router
        self.limits = limits
        self.epoch_tick_s = epoch_tick_s
        self.engine, engine_key = new_engine()
        self.linker = Linker(self.engine)
        self.linker.add_wasip2()
        define_imports(self.linker)
        self.loader = ComponentLoader(self.engine, ComponentCache(self.engine, cache_dir, engine_key))
        # Each component's import converters, built at its first call of each import.
        self._codecs: weakref.WeakKeyDictionary[Component, dict[tuple[Operation, str], ImportCodec]] = weakref.WeakKeyDictionary()
        # Whether each component's export, by name, is run's type (then called without wasmtime-py's reflection).
        self._run_types: weakref.WeakKeyDictionary[Component, dict[str, bool]] = weakref.WeakKeyDictionary()
        self._ticker = _EpochTicker(self.engine, epoch_tick_s)
        self._ticker.start()
        self._log_rate = LogRate(limits.log.per_second)
        # The longest epoch deadline any store was given: closing moves the epoch past it.
        self._deadline_ticks = 0

    # loading -------------------------------------------------------------------------------------
    def load(self, path: str | os.PathLike[str]) -> LoadedComponent:
        """Compile (or take from the cache) and check a component file; ComponentError if it does not fit."""
        return self.loader.load(path)

    def load_bytes(self, data: bytes, name: str) -> LoadedComponent:
        return self.loader.load_bytes(data, name)

    # invoking ------------------------------------------------------------------------------------
    def invoke(self, component: LoadedComponent, verse_id: int, args: str = "", *, export: str = "run",
               limits: Limits | None = None, on_log: LogSink | None = None,
               on_output: OutputSink | None = None) -> str:
        """Call ``export(verse_id, args)``: its ok string, or GuestError with its err string.

        ComponentTrap when it traps, ComponentTimeout when it runs past ``limits.timeout_s`` (provider
        calls included: none gets a gRPC deadline beyond it); the host is unaffected. After an err or a
        trap, the generator instances the invocation started and left running are stopped."""
        return self.invoke_detailed(component, verse_id, args, export=export, limits=limits, on_log=on_log,
                                    on_output=on_output).value

    def invoke_detailed(self, component: LoadedComponent, verse_id: int, args: str = "", *, export: str = "run",
                        limits: Limits | None = None, on_log: LogSink | None = None,
                        on_output: OutputSink | None = None) -> Invocation:
        """``_invoke_detailed``; with telemetry on, in a span (its provider calls' parent) and counted in
        ``worldrt_component_invocations_total`` and ``worldrt_component_invocation_duration_seconds``."""
        if not (telemetry.tracing() or telemetry.metrics_on()):
            return self._invoke_detailed(component, verse_id, args, export=export, limits=limits, on_log=on_log,
                                         on_output=on_output)
        started, outcome = time.perf_counter(), "error"
        try:
            with telemetry.span(f"component {component.name}.{export}", {
                    "worldrt.component": component.name, "worldrt.export": export, "worldrt.verse_id": verse_id}):
                invocation = self._invoke_detailed(component, verse_id, args, export=export, limits=limits,
                                                   on_log=on_log, on_output=on_output)
                log.debug("component %s.%s of verse %d: ok in %.1f ms, %d provider call(s)", component.name, export,
                          verse_id, invocation.call_ms, invocation.provider_calls)
            outcome = "ok"
            return invocation
        except GuestError:
            outcome = "err"
            raise
        except WorldError as exc:
            outcome = exc.code.name
            raise
        finally:
            telemetry.inc("worldrt_component_invocations_total", component.name, outcome)
            telemetry.observe("worldrt_component_invocation_duration_seconds", time.perf_counter() - started,
                              component.name)

    def _invoke_detailed(self, component: LoadedComponent, verse_id: int, args: str = "", *, export: str = "run",
                         limits: Limits | None = None, on_log: LogSink | None = None,
                         on_output: OutputSink | None = None) -> Invocation:
        """``invoke``, returning the value with its timings (a GuestError carries them as ``invocation``).

        ``on_log(level, message)`` receives the component's log calls; ``on_output(stream, data)`` its
        stdout and stderr, which are otherwise this process's."""
        limits = limits or self.limits
        stderr = OutputTail()
        store = self._store(limits, on_output, stderr)
        context = CallContext(verse_id=verse_id, source=component.name, invocation_id=uuid.uuid4().hex,
                              deadline=time.monotonic() + limits.timeout_s)
        codecs = self._codecs.setdefault(component.component, {})
        budget = LogBudget(limits.log, self._log_rate)
        with self._ticker.running(), InvocationScope(self.router, context, on_log, codecs, budget) as scope:
            started = time.perf_counter()
            try:
                instance = self.linker.instantiate(store, component.component)
            except WasmtimeError as exc:
                cause = _cause(exc)
                # wasmtime's store limiter refused a memory: the note says which limit it was.
                note = f" (memory limit {limits.memory_mb} MiB)" if "memory limits" in cause else ""
                raise ComponentError(f"{component.name} could not be instantiated: {cause}{note}") from None
            instantiated = time.perf_counter()
            func = instance.get_func(store, export)
            if func is None:
                raise ComponentError(f"{component.name} has no export `{export}`")
            types = self._run_types.setdefault(component.component, {})
            fast = types.get(export)
            if fast is None:
                fast = types[export] = is_run_type(func.type(store))
            try:
                if fast:
                    ok, value = call_run(store, func, verse_id, args)
                else:
                    result = func(store, verse_id, args)
                func.post_return(store)
            except Exception as exc:  # noqa: BLE001 - every way the call can end is reported below
                error = self._failure(component, limits, scope, exc, time.perf_counter() - started, stderr)
                host_bug = not isinstance(exc, WasmtimeError) and not scope.timed_out
                raise error from (exc if host_bug else None)
            done = time.perf_counter()
        if not fast:
            if not isinstance(result, Variant):
                raise ComponentError(f"{component.name}'s `{export}` returned {type(result).__name__}, "
                                     "expected result<string, string>")
            ok, value = result.tag == "ok", str(result.payload)
        invocation = Invocation(value=value, instantiate_us=(instantiated - started) * 1e6,
                                call_ms=(done - instantiated) * 1000, provider_calls=scope.provider_calls,
                                provider_ms=scope.provider_s * 1000)
        if not ok:
            scope.reap()
            raise GuestError(invocation.value, invocation)
        return invocation

    @staticmethod
    def _failure(component: LoadedComponent, limits: Limits, scope: InvocationScope, exc: Exception,
                 elapsed_s: float, stderr: OutputTail) -> InvocationError:
        """The error for a call that did not return: its instances are stopped first."""
        reaped = scope.reap()
        note = f"; stopped the {len(reaped)} instance(s) it left running" if reaped else ""
        said = stderr.lines()
        if said:
            note += f"; its stderr ended with: {said}"
        reason = _trap_reason(exc) if isinstance(exc, WasmtimeError) else ""
        if scope.timed_out or "interrupt" in reason or elapsed_s >= limits.timeout_s:
            return ComponentTimeout(f"{component.name} ran past its deadline of {limits.timeout_s:g} s "
                                    f"and was stopped{note}")
        if isinstance(exc, ExitTrap):
            return ComponentTrap(f"{component.name} exited with code {exc.code} instead of returning{note}")
        if isinstance(exc, WasmtimeError):
            if "unreachable" in reason and (not said or _OUT_OF_MEMORY.search(said)):
                # How allocators end a component when a memory.grow is refused. wasmtime-py's store limiter
                # cannot report a refusal, so the note needs a silent trap or the guest's own word for it.
                note = f" (it may have run out of its {limits.memory_mb} MiB of memory){note}"
            return ComponentTrap(f"{component.name} trapped: {reason}{note}")
        return ComponentTrap(f"{component.name} stopped: the host failed during its call: "
                             f"{type(exc).__name__}: {exc}{note}")

    def _store(self, limits: Limits, on_output: OutputSink | None, stderr: OutputTail) -> Store:
        store = Store(self.engine)
        wasi = WasiConfig()

        def to_stderr(data: bytes) -> None:
            stderr.add(data)
            if on_output is None:
                _write_all(2, data)
            else:
                on_output("stderr", data)

        if on_output is None:
            wasi.inherit_stdout()
        else:
            wasi.stdout_custom = lambda data: on_output("stdout", data)
        wasi.stderr_custom = to_stderr
        store.set_wasi(wasi)
        store.set_limits(memory_size=limits.memory_mb * _MIB)
        ticks = max(1, math.ceil(limits.timeout_s / self.epoch_tick_s))
        self._deadline_ticks = max(self._deadline_ticks, ticks)
        store.set_epoch_deadline(ticks)
        return store

    # lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the epoch; invocations still running (a component spinning) trap at once, as past their
        deadline, so no thread outlives the runtime by more than its next instruction."""
        self._ticker.stop()
        for _ in range(self._deadline_ticks + 1):
            self.engine.increment_epoch()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
