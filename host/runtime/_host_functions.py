"""The host's side of the world's imports: linker definitions that hand each call to the Router of the
invocation running on this thread, with records converted to protobuf and failures turned into
``err(provider-error)``. A component's ``log`` calls reach the host's log within the invocation's
LogBudget (host/runtime/_log_budget.py); what is past it is dropped and said once, at the end."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

import grpc
from google.protobuf.message import Message
from wasmtime.component import Linker

from worldrt.errors import WorldError, from_rpc_error
from worldrt.host.runtime._log_budget import LogBudget, LogLimits, LogRate
from worldrt.host.runtime._pulls import PULLS
from worldrt.host.runtime._values import ImportCodec, add_import, func_type
from worldrt.host.runtime._world import (
    OPERATIONS,
    PROVIDER_INTERFACES,
    WIT_VERSIONS,
    CallContext,
    Operation,
    Router,
    wit_interface,
)
from worldrt.v1 import pb

log = logging.getLogger("worldrt.component")

LogSink = Callable[[str, str], None]
_LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_current = threading.local()
REAP_GRACE_S = 10.0
_GRPC_EARLY_S = 0.01


class DeadlinePassed(Exception):
    """Raised in a host call to trap the component whose invocation ran out of time."""


# A provider call's failure as the component sees it: err(provider-error{code, message}).
Failure = tuple[str, str]


class InvocationScope:
    """What the imports of one invocation need: its router and caller, and what it has done so far.

    Entered on the thread that runs the component (host calls arrive on that thread)."""

    def __init__(self, router: Router, context: CallContext, on_log: LogSink | None = None,
                 codecs: dict[tuple[Operation, str], ImportCodec] | None = None,
                 log_budget: LogBudget | None = None) -> None:
        self.router = router
        self.log_budget = log_budget or LogBudget(LogLimits(), LogRate(LogLimits().per_second))
        # The converters of the running component's imports, by operation and WIT version (kept per
        # component across invocations).
        self.codecs: dict[tuple[Operation, str], ImportCodec] = {} if codecs is None else codecs
        self.context = context
        self.on_log = on_log
        self.provider_calls = 0
        self.provider_s = 0.0
        # Instances this invocation made and has not stopped or merged away, with the link they came over.
        self.live: dict[str, str] = {}
        self.timed_out = False
        self._outer: InvocationScope | None = None

    def __enter__(self) -> Self:
        self._outer = getattr(_current, "scope", None)
        _current.scope = self
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _current.scope = self._outer
        dropped = self.log_budget.dropped()
        if dropped is not None:  # the one line that says the cut
            log.warning("%s: %s", self.context.source, dropped)
            if self.on_log is not None:
                self.on_log("warn", dropped)

    def provider_call(self, op: Operation, request: Message) -> Message | Failure:
        """The reply to a provider call the component made, or the failure it sees as its err."""
        self._check_deadline(op)
        started = time.perf_counter()
        self.provider_calls += 1
        try:
            reply = self._route(op, request)
        finally:
            self.provider_s += time.perf_counter() - started
        if isinstance(reply, tuple):
            # The router's gRPC deadline is the invocation's: its DEADLINE_EXCEEDED may come a moment early.
            if reply[0] == "DEADLINE_EXCEEDED":
                self._check_deadline(op, slack_s=_GRPC_EARLY_S)
            return reply
        self._check_deadline(op)
        if op.interface == "generator":
            self._track(op.name, request, reply)
        return reply

    def pull(self, op: Operation, request: Message) -> Message | Failure:
        """A pull (``op.pull``): the provider's stream read within the pull's bounds (host/runtime/_pulls.py),
        or the failure the component sees as its err."""
        self._check_deadline(op)
        started = time.perf_counter()

        def open_stream(rpc: Message, timeout_s: float) -> Iterator[Message]:
            self.provider_calls += 1
            return self.router.call_stream(op, rpc, self.context, timeout_s)

        try:
            reply = self._route(op, request,
                                lambda: PULLS[op.rpc](request, open_stream, self.context.remaining_s(math.inf)))
        finally:
            self.provider_s += time.perf_counter() - started
        # The wait's gRPC deadline may have been the invocation's (it is the smaller): then the time is up.
        self._check_deadline(op, slack_s=_GRPC_EARLY_S)
        return reply

    def _route(self, op: Operation, request: Message,
               make: Callable[[], Message] | None = None) -> Message | Failure:
        """The router's reply (or ``make()``'s), or ``err(provider-error)`` for any way it can fail."""
        try:
            reply = make() if make is not None else self.router.call(op, request, self.context)
        except WorldError as exc:
            return exc.code.name, exc.message
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            return error.code.name, error.message
        except Exception as exc:
            log.exception("router failed on %s.%s", op.interface, op.name)
            return ("INTERNAL",
                    f"the host's router failed on {op.interface}.{op.name}: {type(exc).__name__}: {exc}")
        if not isinstance(reply, op.reply):
            return ("INTERNAL", f"the host's router answered {op.interface}.{op.name} with "
                                f"{type(reply).__name__}, expected {op.reply.DESCRIPTOR.name}")
        return reply

    def _check_deadline(self, op: Operation, slack_s: float = 0.0) -> None:
        """End the invocation (a trap) when its time is up: no call starts or returns past the deadline."""
        deadline = self.context.deadline
        if deadline is not None and time.monotonic() + slack_s >= deadline:
            self.timed_out = True
            raise DeadlinePassed(f"the deadline passed during {op.interface}.{op.name}")

    def _track(self, operation: str, request: Any, reply: Any) -> None:
        link = self.context.link_name("generator")
        if operation == "start":
            self.live[reply.instance_id] = link
        elif operation == "branch":
            self.live.update((inst.instance_id, link) for inst in reply.instances)
        elif operation == "stop":
            self.live.pop(request.instance_id, None)
        elif operation == "merge":
            for instance_id in request.instance_ids:
                if instance_id != reply.instance_id:
                    self.live.pop(instance_id, None)

    def reap(self) -> list[str]:
        """Stop the instances this invocation left running (after it trapped); return those stopped."""
        stopped = []
        # The invocation's own deadline may be what ended it: the clean-up gets time of its own.
        deadline = time.monotonic() + REAP_GRACE_S
        for instance_id, link in list(self.live.items()):
            context = replace(self.context, deadline=deadline,
                              link_names={**self.context.link_names, "generator": link})
            try:
                self.router.call(OPERATIONS[("generator", "stop")], pb.InstanceRef(instance_id=instance_id), context)
                stopped.append(instance_id)
            except Exception as exc:  # noqa: BLE001 - best effort: the provider's ttl reaps the rest
                log.warning("could not stop %s after %s trapped: %s", instance_id, self.context.source, exc)
            self.live.pop(instance_id, None)
        return stopped

    def log(self, level: str, message: str) -> None:
        """A component's log call: into the host's log and to the caller, within the invocation's budget."""
        line = self.log_budget.admit(message)
        if line is None:
            return
        log.log(_LEVELS.get(level, logging.INFO), "%s: %s", self.context.source, line)
        if self.on_log is not None:
            self.on_log(level, line)


def _scope() -> InvocationScope:
    scope: InvocationScope | None = getattr(_current, "scope", None)
    if scope is None:
        raise RuntimeError("a component called an import outside an invocation")
    return scope


def _start_as_in_0_1_0(scope: InvocationScope, op: Operation, request: Any) -> Message | Failure:
    """0.1.0's start, as first released: an image the provider does not have means its default image."""
    outcome = scope.provider_call(op, request)
    if isinstance(outcome, tuple) and outcome[0] == "NOT_FOUND" and request.image and not request.snapshot_id:
        log.info("%s: no image %r on its generator; worldrt:verse@0.1.0 starts the default image instead",
                 scope.context.source, request.image)
        request.image = ""
        return scope.provider_call(op, request)
    return outcome


def _provider_func(op: Operation, version: str) -> Callable[[Any, Any, Any, Any], None]:
    as_released = _start_as_in_0_1_0 if (version, op.interface, op.name) == ("0.1.0", "generator", "start") else None

    def call(store: Any, ty: Any, args: Any, results: Any) -> None:
        scope = _scope()
        key = (op, version)
        codec = scope.codecs.get(key)
        if codec is None:
            # The component's own view of the function (it may name fewer record fields than the world).
            with func_type(store, ty) as fty:
                codec = scope.codecs[key] = ImportCodec(fty, op.request, op.reply)
        request = codec.lift(args)
        if op.pull:
            outcome = scope.pull(op, request)
        elif as_released:
            outcome = as_released(scope, op, request)
        else:
            outcome = scope.provider_call(op, request)
        if isinstance(outcome, tuple):
            codec.lower_err(*outcome, results)
        else:
            codec.lower_ok(outcome, results)
    return call


def _log_func(_store: Any, level: str, message: str) -> None:
    _scope().log(level, message)


def _set_link_name(_store: Any, name: str, interfaces: list[str]) -> None:
    scope = _scope()
    for interface in interfaces:
        if interface in PROVIDER_INTERFACES:
            scope.context.link_names[interface] = name or "default"


def define_imports(linker: Linker) -> None:
    """Define the world's imports (generator, coordinator, validator, lattice, log, types) in ``linker``, under
    every released version's name: a component's imports pick its version."""
    with linker.root() as root:
        for version in WIT_VERSIONS:
            for interface in PROVIDER_INTERFACES:
                with root.add_instance(wit_interface(interface, version)) as instance:
                    for (owner, name), op in OPERATIONS.items():
                        if owner == interface and op.served_in(version):
                            add_import(instance, name, _provider_func(op, version))
            with root.add_instance(wit_interface("lattice", version)) as instance:
                instance.add_func("set-link-name", _set_link_name)
            with root.add_instance(wit_interface("log", version)) as instance:
                instance.add_func("log", _log_func)
            with root.add_instance(wit_interface("types", version)):
                pass
