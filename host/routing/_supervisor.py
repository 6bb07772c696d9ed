"""The host's provider daemons: started as children on unix sockets, health-checked, restarted, stopped.

Children get the host's provider token in their environment (never on the command line) and the
host's pid, for which they ask a parent-death signal: a host killed outright takes its providers along.
That token authenticates every call the host makes to them; it is not the token clients give the host.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from worldrt import telemetry
from worldrt.errors import Unavailable
from worldrt.host.routing._daemon_logs import DaemonLog
from worldrt.providers import CATALOG, NORMAL_UMASK, private_dir, serving, spawn_daemon, terminate

if TYPE_CHECKING:
    from worldrt.host.registry import Registry

log = logging.getLogger("worldrt.host")
# Consecutive failed health checks after which a daemon that is still alive counts as hung and is replaced.
HUNG_AFTER_MISSES = 3
# How long a daemon may take to say SERVING before it is ended and counted as failed to start.
START_TIMEOUT_S = 60.0


# The longest path a unix socket address may have (sun_path holds 108 bytes with its NUL).
SOCKET_PATH_MAX = 107

class SupervisorError(Unavailable):
    """A provider daemon could not be started."""


@dataclass
class Child:
    name: str
    address: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_try: float = 0.0
    backoff_s: float = 0.2
    healthy: bool = False
    starting: bool = False  # launched; nobody has waited for its SERVING yet
    misses: int = 0
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    log: DaemonLog | None = None  # its stderr, pumped into the host's log


class Supervisor:
    """Keeps the provider daemons of the host at ``state_dir`` running, each with its ``engine_options``
    (``--set KEY=VALUE``); notes each one's status in the ``registry``. Made before its registry (``attach`` it
    later), it keeps the notes until then: so a command that embeds a host ``launch``es the daemons it needs
    before it loads the rest of the host."""

    def __init__(self, state_dir: Path, registry: Registry | None, *, token: str | None = None,
                 health_interval_s: float = 1.0, on_restart: Callable[[str], None] | None = None,
                 engine_options: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.state_dir = state_dir
        self.registry = registry
        self.engine_options = dict(engine_options or {})
        self._unwritten: list[tuple[str, str, dict[str, object]]] = []
        self._notes = threading.Lock()
        self.token = token or secrets.token_urlsafe(24)
        self.health_interval_s = health_interval_s
        self.start_timeout_s = START_TIMEOUT_S
        self.on_restart = on_restart
        self._children: dict[str, Child] = {}
        self._short: tempfile.TemporaryDirectory[str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="provider-spawner")
        self._sockets = self._socket_dir()
        self._watcher = threading.Thread(target=self._watch, name="provider-supervisor", daemon=True)
        self._watcher.start()
        telemetry.federate("providers", self._metrics_targets)

    def _metrics_targets(self) -> dict[str, str]:
        """{provider: its /metrics URL} of the running daemons that announced one (for the host's /metrics)."""
        found = {}
        for name, child in list(self._children.items()):
            if child.proc is None or child.proc.poll() is not None:
                continue
            try:
                url = (self.state_dir / "logs" / f"{name}.metrics").read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if url.startswith("http://127.0.0.1:"):
                found[name] = url
        return found

    def _socket_dir(self) -> Path:
        """Where the children's sockets go: beside their state, unless that path is too long for a unix
        socket (the kernel takes 107 bytes); then a private directory of its own under /tmp."""
        beside = self.state_dir / "providers"
        longest = max(len(name) for name in CATALOG) + len(".sock") + 1
        if len(str(beside)) + longest <= SOCKET_PATH_MAX:
            return beside
        self._short = tempfile.TemporaryDirectory(prefix="worldrt-")
        return Path(self._short.name)

    def attach(self, registry: Registry) -> None:
        """Note the daemons' statuses in ``registry`` from now on, those noted before it first, in order."""
        with self._notes:
            self.registry = registry
            self._write_notes(self._unwritten)
            self._unwritten.clear()

    def _note(self, name: str, status: str, **fields: object) -> None:
        self._note_all([(name, status, fields)])

    def _note_all(self, notes: list[tuple[str, str, dict[str, object]]]) -> None:
        with self._notes:
            if self.registry is None:
                self._unwritten += notes
            else:
                self._write_notes(notes)

    def _write_notes(self, notes: list[tuple[str, str, dict[str, object]]]) -> None:
        """Record daemons' statuses (in one transaction); a registry that cannot must not stop the supervision."""
        assert self.registry is not None
        if not notes:
            return
        try:
            self.registry.set_statuses(notes)
        except Exception as exc:  # noqa: BLE001 - logged; the daemons are what this class keeps running
            log.warning("could not record %s in the registry: %s",
                        ", ".join(f"{name} as {status}" for name, status, _ in notes),
                        (str(exc).splitlines() or [type(exc).__name__])[0])

    def address(self, name: str) -> str:
        return self.ensure(name).address

    def running(self) -> list[str]:
        return [name for name, child in self._children.items() if child.healthy]

    def child(self, name: str) -> Child | None:
        return self._children.get(name)

    def alive(self, name: str) -> Child | None:
        """The child serving ``name`` if its process runs and was seen SERVING once (None: ``ensure`` would
        start it, or wait for it)."""
        child = self._children.get(name)
        if child is None or child.starting or child.proc is None or child.proc.poll() is not None:
            return None
        return child

    def _child(self, name: str) -> Child:
        if name not in CATALOG:
            raise SupervisorError(f"unknown provider {name!r}; known: {', '.join(CATALOG)}")
        with self._lock:
            child = self._children.get(name)
            if child is None:
                sock = self._sockets / f"{name}.sock"
                child = self._children[name] = Child(name, f"unix:{sock}")
            return child

    def launch(self, names: Iterable[str]) -> None:
        """Start the daemons of ``names`` that are not running, side by side, without waiting for them:
        ``ensure`` (or the health watch) waits for each one's SERVING. A name not in the catalog is left
        for ``ensure`` to refuse when it is asked for."""
        for name in dict.fromkeys(n for n in names if n in CATALOG):
            child = self._child(name)
            with child.lock:
                if child.proc is None:
                    self._launch(child)

    def ensure(self, name: str) -> Child:
        """The child serving ``name``, started (and waited for) if it is not running."""
        child = self.alive(name)
        if child is not None:
            return child
        child = self._child(name)
        restarted = False
        with child.lock:
            if child.proc is None:
                self._spawn(child)
            elif child.starting:
                self._await(child)
            elif child.proc.poll() is not None:
                self._restart(child)
                restarted = True
        if restarted and self.on_restart is not None:
            self.on_restart(name)
        return child

    def _restart(self, child: Child) -> None:
        assert child.proc is not None
        child.healthy = False
        child.restarts += 1
        child.last_error = f"exited with {child.proc.returncode}"
        log.warning("provider %s %s; restarting (restart %d)", child.name, child.last_error, child.restarts)
        self._note(child.name, "restarting", restarts=child.restarts, last_error=child.last_error)
        self._spawn(child)

    def _spawn(self, child: Child) -> None:
        self._launch(child)
        self._await(child)

    def _launch(self, child: Child) -> None:
        logs = private_dir(self.state_dir / "logs")
        # The daemon asks for a parent-death signal itself (preexec_fn is unsafe in a threaded host).
        # Telemetry settings (OTEL_*, WORLDRT_LOG_FORMAT) are inherited; the service name is the daemon's own.
        env = {**os.environ, "WORLDRT_PARENT_PID": str(os.getpid())}
        env.pop("OTEL_SERVICE_NAME", None)
        args: list[str] = []
        if telemetry.metrics_on():  # its own loopback /metrics, which the host's re-exposes (``_metrics_targets``)
            announce = logs / f"{child.name}.metrics"
            announce.unlink(missing_ok=True)
            env[telemetry.ANNOUNCE_ENV] = str(announce)
            args = ["--metrics-listen", "127.0.0.1:0"]
        self._note(child.name, "starting", address=child.address)
        child.starting = True  # before it has a process: no call reaches it until it was seen SERVING
        try:
            # Always from the same long-lived thread: a parent-death signal fires when the forking thread ends.
            child.proc = self._spawner.submit(spawn_daemon, child.name, child.address, self.state_dir / "providers",
                                              logs / f"{child.name}.log", token=self.token, env=env, args=args,
                                              options=self.engine_options.get(child.name),
                                              umask=NORMAL_UMASK, pipe_stderr=True).result()
        except BaseException:
            child.starting = False
            raise
        assert child.proc.stderr is not None
        child.log = DaemonLog(child.name, child.proc.stderr, logs / f"{child.name}.log")

    def _await(self, child: Child) -> None:
        assert child.proc is not None
        try:
            self._wait_serving(child, timeout_s=self.start_timeout_s)
        except SupervisorError as exc:
            # One that never said SERVING is ended (``close`` ends it when the host stops), so that whoever asks
            # next starts it afresh and never uses it.
            if child.proc.poll() is None and not self._stop.is_set():
                terminate(child.proc, 2.0)
            child.last_error = str(exc)
            self._note(child.name, "unavailable", last_error=child.last_error)
            raise
        finally:
            child.starting = False
        child.healthy = True
        child.backoff_s = 0.2
        self._note(child.name, "available", address=child.address, pid=child.proc.pid,
                                 restarts=child.restarts, last_error=None)
        log.info("provider %s serving at %s (pid %d)", child.name, child.address, child.proc.pid)

    def _check(self, address: str, timeout_s: float) -> bool:
        return serving(address, timeout_s) is True

    def _wait_serving(self, child: Child, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert child.proc is not None
        while time.monotonic() < deadline:
            if self._stop.is_set():
                raise SupervisorError(f"provider {child.name} was still starting when its host stopped")
            if child.proc.poll() is not None:
                raise SupervisorError(f"provider {child.name} exited with {child.proc.returncode} while starting; "
                                      f"see {self.state_dir / 'logs' / (child.name + '.log')}")
            if self._check(child.address, 1.0):
                return
            time.sleep(0.01)  # a stat of the socket's path until the daemon binds it (after its provider opened)
        raise SupervisorError(f"provider {child.name} did not report SERVING within {timeout_s:g} s")

    def _watch(self) -> None:
        while not self._stop.wait(self.health_interval_s):
            for child in list(self._children.values()):
                if self._stop.is_set():
                    return
                self._tend(child)

    def _tend(self, child: Child) -> None:
        with child.lock:
            if child.proc is None:
                return
            if child.starting:  # launched, and nobody asked for it yet
                try:
                    self._await(child)
                except SupervisorError as exc:
                    if not self._stop.is_set():
                        log.error("%s", exc)
                return
            dead = child.proc.poll() is not None
            if not dead and self._check(child.address, 2.0):
                child.misses = 0
                if not child.healthy:
                    child.healthy = True
                    self._note(child.name, "available", restarts=child.restarts)
                return
            if not dead:
                child.healthy = False
                child.misses += 1
                self._note(child.name, "unavailable", last_error=f"health check failed {child.misses} time(s)")
                if child.misses < HUNG_AFTER_MISSES:
                    return
                log.warning("provider %s is alive but has not answered %d health checks: replacing it",
                            child.name, child.misses)
                child.proc.kill()
                child.proc.wait()
                child.misses = 0
            child.healthy = False
            if time.monotonic() < child.next_try:
                return
            try:
                self._restart(child)
            except SupervisorError as exc:
                child.next_try = time.monotonic() + child.backoff_s
                child.backoff_s = min(child.backoff_s * 2, 10.0)
                log.error("%s", exc)
                return
        if self.on_restart is not None:
            self.on_restart(child.name)

    def stop(self, name: str, timeout_s: float = 15.0) -> None:
        child = self._children.get(name)
        if child is None or child.proc is None:
            return
        with child.lock:
            terminate(child.proc, timeout_s)
            if child.log is not None:
                child.log.join()
            child.healthy = child.starting = False
            self._note(name, "stopped")

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop every child (SIGTERM, then SIGKILL after ``timeout_s``) and the watcher; once."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._watcher.join()
        procs = [c.proc for c in self._children.values() if c.proc is not None and c.proc.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            terminate(proc, max(0.1, deadline - time.monotonic()))
        self._spawner.shutdown()
        for child in self._children.values():
            if child.log is not None:
                child.log.join(max(0.1, deadline - time.monotonic()))
            child.healthy = False
        self._note_all([(name, "stopped", {}) for name in self._children])
        if self._short is not None:
            self._short.cleanup()
