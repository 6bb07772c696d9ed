"""The host: registry, supervised provider daemons, links, router and component runtime in one object.

Its methods speak the ``worldrt.v1.Host`` messages, so the gRPC service and the embedded CLI path share
one implementation.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc

from worldrt.errors import InvalidArgument, NotFound, ResourceExhausted, WorldError
from worldrt.host._images_files import ImagesAndFiles
from worldrt.host._paths import default_db, default_home
from worldrt.host.lattice import CallReport, HostLink, LinkRouter, LinkTable, Supervisor
from worldrt.host.registry import DEFAULT_CAP_BYTES, Registry, RegistryError
from worldrt.host.runtime import OPERATIONS, CallContext, ComponentRuntime, GuestError, Limits, LoadedComponent
from worldrt.host.verse import (
    VerseRunner,
    audit,
    efficiency,
    run_benchmark,
    runs,
    wev_over_time,
    wev_per_cost,
)
from worldrt.providers import CATALOG, private_dir, serving
from worldrt.v1 import host_pb, pb

log = logging.getLogger("worldrt.host")

InvokeSink = Callable[[host_pb.InvokeEvent], None]
OUTPUT_EVENT_CAP = 1 << 20
# Component invocations running at once in one host: each may spin a core until its deadline.
DEFAULT_MAX_COMPONENTS = 8
# How long an invocation waits for a free place before it is refused (only in-process callers ever wait:
# the host service admits no more invocations than there are places).
COMPONENT_WAIT_S = 30.0


def default_cache(home: Path) -> Path:
    """Compiled components and built examples; WORLDRT_CACHE shares one cache between homes."""
    return Path(os.environ.get("WORLDRT_CACHE") or home / "cache")


def env_number(name: str) -> float | None:
    """A number from the environment (None when unset); RegistryError with a sentence when it is not one."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise RegistryError(f"{name} must be a number, got {text!r}") from None


class HostError(InvalidArgument):
    """A request the host refuses; the message says what to change."""


_REPLY_FIELD = {pb.Instance: "instance", pb.SnapshotRef: "snapshot", pb.BranchReply: "branch",
                pb.ExecutionResult: "execution"}


def _operation_of(request: host_pb.ProviderCallRequest) -> str:
    if not request.source:
        raise HostError("ProviderCallRequest.source is required: the name whose generator link picks the provider")
    operation: str | None = request.WhichOneof("request")
    if operation is None:
        raise HostError("ProviderCallRequest names no operation: set start, stop, snapshot, branch, execute or merge")
    return operation


class ComponentSlots:
    """At most ``limit`` component invocations run at once; the next waits up to ``wait_s`` for a place,
    then is refused with ResourceExhausted. Spinning components so take at most ``limit`` threads and
    never the host's others (health, provider-call forwarding)."""

    def __init__(self, limit: int, wait_s: float = COMPONENT_WAIT_S) -> None:
        if limit < 1:
            raise HostError(f"the host must run at least 1 component invocation at once, not {limit}")
        self.limit = limit
        self.wait_s = wait_s
        self.running = 0
        self._places = threading.BoundedSemaphore(limit)
        self._count = threading.Lock()

    def __enter__(self) -> None:
        if not self._places.acquire(timeout=self.wait_s):
            raise ResourceExhausted(f"the host is busy: {self.running} component invocations running, its limit "
                                    f"(--max-components {self.limit}), and none ended within {self.wait_s:g} s")
        with self._count:
            self.running += 1

    def __exit__(self, *exc: object) -> None:
        with self._count:
            self.running -= 1
        self._places.release()


class Host(ImagesAndFiles):
    """``keep_days`` (default $WORLDRT_KEEP_DAYS; None keeps every row) prunes provider_invocations rows
    older than that; ``output_cap`` (default $WORLDRT_OUTPUT_CAP or 4096) is how many bytes of stdout,
    stderr and code each stored row keeps. ``max_components`` (default $WORLDRT_MAX_COMPONENTS or 8)
    component invocations run at once, each for at most ``component_timeout_s`` (default
    $WORLDRT_COMPONENT_TIMEOUT_S or 120)."""

    def __init__(self, db_path: Path | None = None, home: Path | None = None, *, keep_days: float | None = None,
                 output_cap: int | None = None, max_components: int | None = None,
                 component_timeout_s: float | None = None) -> None:
        self.home = private_dir(home or default_home()).resolve()
        if keep_days is None:
            keep_days = env_number("WORLDRT_KEEP_DAYS")
        if output_cap is None:
            cap = env_number("WORLDRT_OUTPUT_CAP")
            output_cap = DEFAULT_CAP_BYTES if cap is None else int(cap)
        self.components_running = ComponentSlots(DEFAULT_MAX_COMPONENTS)
        self.registry = Registry.open(db_path or default_db(), keep_days=keep_days, cap_bytes=output_cap)
        try:
            self.links = LinkTable(self.registry)
            self.supervisor = Supervisor(self.home, self.registry, on_restart=self._relink)
            self.router = self._make_router()
            self.cache = default_cache(self.home)
            self.runtime = ComponentRuntime(self.router, cache_dir=self.cache / "components")
            self.limit_components(max_components, component_timeout_s)
        except BaseException:
            self.registry.close()
            raise
        self._components: dict[str, LoadedComponent] = {}
        # How many bytes of each of a component's streams one invocation sends its caller.
        self.output_event_cap = OUTPUT_EVENT_CAP
        self._by_file: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    @property
    def max_components(self) -> int:
        return self.components_running.limit

    def limit_components(self, max_components: int | None = None, timeout_s: float | None = None) -> None:
        """Set how many component invocations run at once and for how long each may (None: from
        $WORLDRT_MAX_COMPONENTS and $WORLDRT_COMPONENT_TIMEOUT_S, else 8 and 120 s); call before serving."""
        if max_components is None:
            configured = env_number("WORLDRT_MAX_COMPONENTS")
            max_components = DEFAULT_MAX_COMPONENTS if configured is None else int(configured)
        if timeout_s is None:
            timeout_s = env_number("WORLDRT_COMPONENT_TIMEOUT_S") or Limits().timeout_s
        if timeout_s <= 0:
            raise HostError(f"a component's timeout must be more than 0 s, not {timeout_s:g}")
        self.components_running = ComponentSlots(max_components)
        self.runtime.limits = replace(self.runtime.limits, timeout_s=timeout_s)

    def _make_router(self) -> LinkRouter:
        """The router of this host's calls (a lattice host's goes over NATS)."""
        return LinkRouter(self.links, self.registry, self.supervisor.address, self.supervisor.token)

    # links ---------------------------------------------------------------------------------------
    def _provider_stub(self, name: str) -> tuple[object, tuple[tuple[str, str], ...]]:
        address = self.supervisor.address(name)
        return self.router.stub(address), (("authorization", f"Bearer {self.supervisor.token}"),)

    def put_link(self, request: pb.LinkConfig) -> pb.LinkReply:
        link = HostLink.from_pb(request)
        self.links.validate(link, set(CATALOG))
        previous = self.links.get(link.link_id)
        if previous == link and link.target_provider in self.supervisor.running():
            return pb.LinkReply(link_id=link.link_id, existed=True, links=len(self.links.all()))
        self.links.put(link)
        if previous is not None and previous.target_provider != link.target_provider:
            self._forward_delete(previous)
        stub, metadata = self._provider_stub(link.target_provider)
        stub.ReceiveLinkConfig(link.to_pb(), metadata=metadata, timeout=10)  # type: ignore[attr-defined]
        return pb.LinkReply(link_id=link.link_id, existed=previous is not None, links=len(self.links.all()))

    def delete_link(self, request: pb.LinkConfig) -> pb.LinkReply:
        previous = self.links.delete(request.link_id)
        if previous is not None:
            self._forward_delete(previous)
        return pb.LinkReply(link_id=request.link_id, existed=previous is not None, links=len(self.links.all()))

    def _forward_delete(self, link: HostLink) -> None:
        if link.target_provider not in self.supervisor.running():
            return
        try:
            stub, metadata = self._provider_stub(link.target_provider)
            stub.DeleteLink(pb.LinkConfig(link_id=link.link_id), metadata=metadata, timeout=10)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            log.warning("could not tell %s to drop link %s: %s", link.target_provider, link.link_id, exc.details())

    def _relink(self, provider: str) -> None:
        """A restarted provider gets a fresh channel and its links again (it lost them with its process)."""
        child = self.supervisor.child(provider)
        if child is not None:
            self.router.forget(child.address)
        for link in self.links.all():
            if link.target_provider == provider:
                try:
                    stub, metadata = self._provider_stub(provider)
                    stub.ReceiveLinkConfig(link.to_pb(), metadata=metadata, timeout=10)  # type: ignore[attr-defined]
                except grpc.RpcError as exc:
                    log.warning("could not relink %s to %s: %s", link.link_id, provider, exc.details())

    def list_links(self, request: host_pb.ListLinksRequest) -> host_pb.ListLinksReply:
        return host_pb.ListLinksReply(links=[link.public_pb() for link in self.links.all()])

    def ensure_link(self, source: str, interface: str, provider: str) -> None:
        """Link ``interface`` of ``source`` to ``provider`` unless a link (its own or ``*``) already resolves."""
        if self.links.resolve(source, interface) is None:
            self.put_link(pb.LinkConfig(source_component=source, interfaces=[interface], target_provider=provider))

    # providers -----------------------------------------------------------------------------------
    def _state(self, row: dict[str, Any]) -> host_pb.ProviderState:
        return host_pb.ProviderState(
            provider_id=str(row["provider_id"]), name=str(row["name"]), trit=int(row["trit"] or 0),
            status=str(row["status"] or ""), address=str(row["address"] or ""), pid=int(row["pid"] or 0),
            restarts=int(row["restarts"] or 0), last_error=str(row["last_error"] or ""),
            api_endpoint=str(row["api_endpoint"] or ""))

    def list_providers(self, request: host_pb.ListProvidersRequest) -> host_pb.ListProvidersReply:
        return host_pb.ListProvidersReply(providers=[self._state(r) for r in self.registry.providers()])

    def provider_status(self, request: host_pb.ProviderStatusRequest) -> host_pb.ProviderState:
        """Start the provider if needed, ask its health and capabilities, and record what it said."""
        name = request.provider_id
        if name not in CATALOG:
            raise HostError(f"unknown provider {name!r}; known: {', '.join(CATALOG)}")
        stub, metadata = self._provider_stub(name)
        caps = stub.Capabilities(pb.CapabilitiesRequest(), metadata=metadata, timeout=10)  # type: ignore[attr-defined]
        self.registry.set_status(name, "available", capabilities={
            "languages": list(caps.languages), "operations": list(caps.operations),
            **{c.name: json.loads(c.value_json) for c in caps.capabilities}})
        row = next(r for r in self.registry.providers() if r["provider_id"] == name)
        state = self._state(row)
        state.capabilities.CopyFrom(caps)
        return state

    def provider_healthy(self, name: str) -> bool:
        """Whether ``name``'s daemon (started if it is not running) answers SERVING."""
        try:
            address = self.supervisor.ensure(name).address
        except WorldError as exc:
            log.warning("provider %s cannot start: %s", name, exc)
            return False
        return serving(address, timeout_s=2) is True

    # components ----------------------------------------------------------------------------------
    def load_component(self, request: host_pb.LoadComponentRequest) -> host_pb.ComponentInfo:
        try:
            if request.path:
                component = self._loaded_file(request.path)
            elif request.wasm:
                component = self.runtime.load_bytes(request.wasm, request.name or "component")
            else:
                raise HostError("LoadComponent needs a path or the component's bytes")
        except FileNotFoundError as exc:
            raise NotFound(f"no such component file: {exc.filename}") from None
        with self._lock:
            self._components[component.digest] = component
        return host_pb.ComponentInfo(
            component_id=component.digest, name=component.name, sha256=component.digest,
            size_bytes=component.size_bytes, imports=list(component.imports), exports=list(component.exports),
            from_cache=component.cached, load_ms=component.load_ms)

    def _loaded_file(self, path: str) -> LoadedComponent:
        """Load a file once: while its size and mtime stay the same, the compiled component is reused."""
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
        known = self._by_file.get(key)
        if known is not None and known in self._components:
            return self._components[known]
        component = self.runtime.load(path)
        self._by_file[key] = component.digest
        return component

    def invoke(self, request: host_pb.InvokeRequest, on_event: InvokeSink | None = None) -> host_pb.InvokeOutcome:
        component = self._components.get(request.component_id)
        if component is None:
            if not request.path:
                raise HostError(f"no loaded component {request.component_id!r}: LoadComponent it or give a path")
            component = self._components[self.load_component(
                host_pb.LoadComponentRequest(path=request.path)).component_id]
        self.ensure_link(component.name, "generator", "morph")

        def on_call(report: CallReport) -> None:
            if on_event is not None:
                on_event(host_pb.InvokeEvent(call=host_pb.ProviderCall(
                    interface=report.interface, operation=report.operation, provider_id=report.provider,
                    latency_ms=report.latency_ms, cost_units=report.cost_units, error=report.error,
                    startup_ms=report.startup_ms)))

        def on_log(level: str, message: str) -> None:
            if on_event is not None:
                on_event(host_pb.InvokeEvent(log=f"[{level}] {message}"))

        forwarded = {"stdout": 0, "stderr": 0}
        cap = self.output_event_cap

        def on_output(stream: str, data: bytes) -> None:
            # The caller gets the component's output as events, up to a cap per stream and invocation.
            sent = forwarded[stream]
            if on_event is None or sent > cap:
                return
            forwarded[stream] = sent + len(data)
            if sent + len(data) > cap:
                data = data[:cap - sent] + f"\n[{stream} cut at {cap} bytes]\n".encode()
            on_event(host_pb.InvokeEvent(output=host_pb.ComponentOutput(stream=stream, data=data)))

        try:
            with self.components_running:
                self.router.observe(on_call)
                result = self.runtime.invoke_detailed(component, request.verse_id, request.args,
                                                      export=request.export or "run", on_log=on_log,
                                                      on_output=on_output)
        except GuestError as exc:
            run = exc.invocation
            return host_pb.InvokeOutcome(ok=False, value=exc.message,
                                         duration_ms=getattr(run, "call_ms", 0.0),
                                         provider_calls=getattr(run, "provider_calls", 0))
        finally:
            self.router.observe(None)
        return host_pb.InvokeOutcome(ok=True, value=result.value, duration_ms=result.call_ms,
                                     provider_calls=result.provider_calls)

    # verses --------------------------------------------------------------------------------------
    def run_verse(self, request: host_pb.VerseRequest, on_event: InvokeSink | None = None) -> dict[str, object]:
        runner = VerseRunner(self)
        kind = request.kind or "pipeline"
        if kind == "pipeline":
            return runner.pipeline(request.verse_id, request.preset or "full", request.branches or 3,
                                   request.component_path, request.allow_unbalanced, on_event)
        if kind == "solo":
            return runner.solo(request.verse_id, request.provider, request.component_path, on_event)
        if kind == "select":
            return runner.selection(request.preset or "full")
        if kind == "orchestrate":
            return runner.orchestrate(request.verse_id, request.mode or "optimal", request.preset or "full",
                                      request.branches or 3, request.stake or 100.0,
                                      component=request.component_path,
                                      allow_unbalanced=request.allow_unbalanced, on_event=on_event)
        raise HostError(f"unknown verse run kind {kind!r}: pipeline, solo, orchestrate or select")

    def analytics(self, request: host_pb.AnalyticsRequest) -> host_pb.AnalyticsReply:
        self.registry.flush()
        reports = {
            "wev": lambda: wev_over_time(self.registry),
            "efficiency": lambda: efficiency(self.registry),
            "wev_per_cost": lambda: wev_per_cost(self.registry),
            "audit": lambda: audit(self.registry, all_runs=request.all_runs),
            "runs": lambda: runs(self.registry),
            "benchmark": lambda: run_benchmark(self, request.reps or 10),
        }
        if request.report not in reports:
            raise HostError(f"unknown report {request.report!r}; reports: {', '.join(reports)}")
        return host_pb.AnalyticsReply(rows_json=json.dumps(reports[request.report](), default=str))

    # registry ------------------------------------------------------------------------------------
    def recent_invocations(self, request: host_pb.RecentInvocationsRequest) -> host_pb.RecentInvocationsReply:
        self.registry.flush()
        rows = self.registry.recent_invocations(request.limit or 20, request.verse_id or None)
        return host_pb.RecentInvocationsReply(invocations=[host_pb.InvocationRow(
            invocation_id=r["invocation_id"], provider_id=r["provider_id"] or "", operation=r["operation"] or "",
            verse_id=r["verse_id"] or "", input_params=r["input_params"] or "", output_result=r["output_result"] or "",
            latency_ms=r["latency_ms"] or 0.0, cost_units=r["cost_units"] or 0.0, invoked_at=str(r["invoked_at"]),
            startup_ms=r.get("startup_ms") or 0.0)
            for r in rows])

    # provider calls (compatible HTTP APIs) ------------------------------------------------------------
    def call_provider(self, request: host_pb.ProviderCallRequest) -> host_pb.ProviderCallReply:
        """One generator operation through ``request.source``'s link, recorded like a component's import."""
        operation = _operation_of(request)
        reply = self.router.call(OPERATIONS[("generator", operation)], getattr(request, operation),
                                 CallContext(request.verse_id, request.source))
        answer = host_pb.ProviderCallReply()
        getattr(answer, _REPLY_FIELD[type(reply)]).CopyFrom(reply)
        return answer

    def call_provider_stream(self, request: host_pb.ProviderCallRequest,
                             on_event: InvokeSink | None = None) -> pb.ExecutionResult:
        """``execute`` over ExecuteStream: each output event to ``on_event``; the result is returned."""
        if _operation_of(request) != "execute":
            raise HostError("CallProviderStream streams only execute")
        result = pb.ExecutionResult()
        for event in self.router.stream(request.execute, CallContext(request.verse_id, request.source)):
            if event.HasField("result"):
                result = event.result
            elif on_event is not None:
                on_event(host_pb.InvokeEvent(execution=event))
        return result

    # lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the providers it started and write every queued row."""
        self.runtime.close()
        self.router.close()
        self.supervisor.close()
        self.registry.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
