"""Which calls the host service lets onto its worker threads, and the sentence for those it refuses.

Every Host method blocks (DuckDB, wasmtime, provider calls), so each call the service admits holds one
thread of its pool until the method returns. Admission keeps that bounded and fair, and never queues:

* component invocations (``Invoke``, ``RunVerse``) are at most the host's component limit at once;
* quick calls (listings, reads of the registry, Stop) are at most ``quick`` at once, apart from the rest,
  so they never wait behind long ones: an instance can always be stopped, however busy the host is;
* every other call is at most ``calls`` at once;
* calls that take an instance's turn (execute, snapshot, files) are at most ``per_instance`` per instance,
  since a provider runs them one at a time: a slow instance slows only its own callers;
* calls that follow a process (an output stream, which lasts as long as the process writes, and a wait,
  at most the host's wait slice) and watches of an instance's files are at most ``follows`` at once and
  ``follows_per_instance`` on one instance, apart from every other call: however many readers follow
  however many processes, an exec, a file call or a stdin write on the same instance still gets its place.
  The other process calls (start, stdin, list, a wait of 0) are short "calls" that wait for no turn; a
  signal is quick, as Stop is.

A call past a limit is refused at once with RESOURCE_EXHAUSTED and a sentence naming the host, what is
running and the limit. The pool has a thread for every call the limits admit, so an admitted call never
waits for one, and health is answered elsewhere (on the server's event loop) whatever the pool does.
A ticket is taken on the event loop and given back by the worker thread when the method really ends, so
a call whose client went away still counts until its thread is free.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from google.protobuf.message import Message

from worldrt.errors import Reason, ResourceExhausted

COMPONENT_METHODS = frozenset({"invoke", "run_verse"})
# Calls that only read what the host knows (or stop an instance): short, whatever else runs.
QUICK_METHODS = frozenset({"list_links", "list_providers", "recent_invocations", "list_images", "inspect_image"})
# Calls that wait for an instance's turn at its provider (Stop does not: it is what frees a busy instance).
_TURN_OPERATIONS = frozenset({"execute", "snapshot"})
_FILE_METHODS = {"write_files": "files", "read_file": "read", "list_files": "list", "stat_file": "stat",
                 "make_directory": "mkdir", "move_file": "move", "remove_file": "remove", "watch_files": "watch"}
_QUICK_OPERATIONS = frozenset({"stop", "signal_process"})
DEFAULT_CALLS = 64
DEFAULT_QUICK = 8
DEFAULT_PER_INSTANCE = 8
DEFAULT_FOLLOWS = 64
DEFAULT_FOLLOWS_PER_INSTANCE = 16


@dataclass(frozen=True)
class ServiceLimits:
    """How many calls the host service runs at once: ``components`` invocations, ``calls`` others, ``quick``
    quick ones, ``per_instance`` calls on one instance, and ``follows`` calls following a process
    (``follows_per_instance`` on one instance)."""

    components: int
    calls: int = DEFAULT_CALLS
    per_instance: int = DEFAULT_PER_INSTANCE
    quick: int = DEFAULT_QUICK
    follows: int = DEFAULT_FOLLOWS
    follows_per_instance: int = DEFAULT_FOLLOWS_PER_INSTANCE

    @property
    def threads(self) -> int:
        return self.components + self.calls + self.quick + self.follows


def _follows(method: str, request: Message) -> bool:
    """Whether the call follows a process: reads its output, or waits for its end."""
    if method == "watch_files":
        return True
    if method not in ("call_provider", "call_provider_stream"):
        return False
    operation = request.WhichOneof("request")
    if operation == "read_process_output":
        return True
    return operation == "wait_process" and int(getattr(request, operation).timeout_ms) > 0


def kind_of(method: str, request: Message) -> str:
    """"components", "quick", "follows" or "calls": the limit a call counts against."""
    if method in COMPONENT_METHODS:
        return "components"
    if method in QUICK_METHODS or (method == "call_provider" and request.WhichOneof("request") in _QUICK_OPERATIONS):
        return "quick"
    if _follows(method, request):
        return "follows"
    return "calls"


def instance_of(method: str, request: Message) -> str:
    """The instance whose turn the call waits for at its provider, or (for a call following a process)
    whose processes it follows; "" for calls that wait for neither."""
    if method in ("call_provider", "call_provider_stream"):
        operation = request.WhichOneof("request")
        if operation in _TURN_OPERATIONS or _follows(method, request):
            return str(getattr(request, operation).instance_id)
        return ""
    field = _FILE_METHODS.get(method)
    return str(getattr(request, field).instance_id) if field else ""


class Ticket:
    """One admitted call; ``release`` (once, from any thread) gives its place back."""

    def __init__(self, admission: Admission, kind: str, instance: str) -> None:
        self._admission = admission
        self.kind = kind
        self.instance = instance
        self._released = False

    def release(self) -> None:
        self._admission._release(self)


class Admission:
    """Counts the calls on the pool, by kind and by instance; thread-safe."""

    def __init__(self, address: str, limits: ServiceLimits) -> None:
        self.address = address
        self.limits = limits
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()
        self._per_instance: Counter[str] = Counter()
        self._follows_per_instance: Counter[str] = Counter()

    def running(self) -> int:
        with self._lock:
            return sum(self._running.values())

    def admit(self, method: str, request: Message) -> Ticket:
        """A ticket for the call, or ResourceExhausted saying which limit it met."""
        kind = kind_of(method, request)
        instance = instance_of(method, request)
        with self._lock:
            running = self._running[kind]
            if kind == "components" and running >= self.limits.components:
                raise ResourceExhausted(
                    f"the host at {self.address} is busy: {running} component invocations running, its limit "
                    f"(host serve --max-components {self.limits.components}); try again when one ends", reason=Reason.HOST_BUSY)
            if kind == "calls" and running >= self.limits.calls:
                raise ResourceExhausted(
                    f"the host at {self.address} is busy: {running} calls running, its limit (host serve "
                    f"--max-calls {self.limits.calls}); try again when some end", reason=Reason.HOST_BUSY)
            if kind == "quick" and running >= self.limits.quick:
                raise ResourceExhausted(
                    f"the host at {self.address} is busy: {running} quick calls (listings, Stop) running, its "
                    f"limit ({self.limits.quick}); try again in a moment", reason=Reason.HOST_BUSY)
            if kind == "follows" and running >= self.limits.follows:
                raise ResourceExhausted(
                    f"the host at {self.address} is busy: {running} calls follow processes (output streams, waits), "
                    f"its limit ({self.limits.follows}); stop a reader or try again when one ends",
                    reason=Reason.HOST_BUSY)
            per_instance = self._follows_per_instance if kind == "follows" else self._per_instance
            if kind == "follows" and instance and per_instance[instance] >= self.limits.follows_per_instance:
                raise ResourceExhausted(
                    f"instance {instance} is busy: {per_instance[instance]} calls follow its processes (output "
                    f"streams, waits) at the host at {self.address}, the limit per instance "
                    f"({self.limits.follows_per_instance}); stop a reader or read with no_wait",
                    reason=Reason.INSTANCE_BUSY)
            if kind != "follows" and instance and per_instance[instance] >= self.limits.per_instance:
                raise ResourceExhausted(
                    f"instance {instance} is busy: {self._per_instance[instance]} calls on it run or wait at the "
                    f"host at {self.address}, the limit per instance ({self.limits.per_instance}); calls on one "
                    f"instance run one at a time, so wait for them or use another instance",
                    reason=Reason.INSTANCE_BUSY)
            self._running[kind] += 1
            if instance:
                per_instance[instance] += 1
        return Ticket(self, kind, instance)

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._released:
                return
            ticket._released = True
            self._running[ticket.kind] -= 1
            if ticket.instance:
                per_instance = self._follows_per_instance if ticket.kind == "follows" else self._per_instance
                per_instance[ticket.instance] -= 1
                if per_instance[ticket.instance] <= 0:
                    del per_instance[ticket.instance]
