"""The host: registry, supervised provider daemons, links, router and component runtime in one object.

Its methods speak the ``worldrt.v1.Host`` messages, so the gRPC service and the embedded CLI path share
one implementation.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from worldrt.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, WorldError
from worldrt.host._embedded import EarlyStart, host_home
from worldrt.host._file_ops import FileOps
from worldrt.host._images_files import ImagesAndFiles
from worldrt.host._paths import default_db, default_home
from worldrt.host._processes import PROCESS_CALLS, Processes
from worldrt.host.registry import DEFAULT_CAP_BYTES, Registry, RegistryError
from worldrt.host.routing import (
    CallReport,
    HostLink,
    LinkError,
    LinkTable,
    LocalTransport,
    Router,
    Supervisor,
    Transport,
    provider_state,
)
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
from worldrt.providers import CATALOG
from worldrt.v1 import host_pb, pb

if TYPE_CHECKING:
    from worldrt.host.lattice import LatticeOptions, Member

log = logging.getLogger("worldrt.host")

InvokeSink = Callable[[host_pb.InvokeEvent], None]
OUTPUT_EVENT_CAP = 1 << 20
# Link forwarding and capabilities answer within this.
LINK_TIMEOUT_S = 10.0
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
        raise HostError("ProviderCallRequest names no operation: set start, stop, snapshot, branch, execute, merge "
                        "or a process operation (start_process, write_process_stdin, wait_process, signal_process, "
                        "list_processes)")
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


class Host(ImagesAndFiles, FileOps, Processes):
    """``keep_days`` (default $WORLDRT_KEEP_DAYS; None keeps every row) prunes provider_invocations rows
    older than that; ``output_cap`` (default $WORLDRT_OUTPUT_CAP or 4096) is how many bytes of stdout,
    stderr and code each stored row keeps. ``max_components`` (default $WORLDRT_MAX_COMPONENTS or 8)
    component invocations run at once, each for at most ``component_timeout_s`` (default
    $WORLDRT_COMPONENT_TIMEOUT_S or 120).

    Given ``lattice``, the host joins that NATS lattice as ``host_id``: it runs only the ``providers``
    named (none: a pure caller that never starts a daemon) and serves each healthy one onto the lattice;
    its router's transport is the lattice (every call reaches a replica of its provider on any host, its
    own included), its links are the lattice's (the links bucket), and its invocation rows and runs go to
    the lattice's streams as well as into its own DuckDB file.

    ``early`` is what a command that embeds this host started before it loaded it (``EarlyStart``): the
    registry's lock and a supervisor whose daemons are starting; the host takes both over."""

    def __init__(self, db_path: Path | None = None, home: Path | None = None, *, keep_days: float | None = None,
                 output_cap: int | None = None, max_components: int | None = None,
                 component_timeout_s: float | None = None, lattice: LatticeOptions | None = None,
                 host_id: str = "", providers: Sequence[str] = (), early: EarlyStart | None = None) -> None:
        self.home = host_home(home or default_home())
        if keep_days is None:
            keep_days = env_number("WORLDRT_KEEP_DAYS")
        if output_cap is None:
            cap = env_number("WORLDRT_OUTPUT_CAP")
            output_cap = DEFAULT_CAP_BYTES if cap is None else int(cap)
        unknown = [p for p in providers if p not in CATALOG]
        if unknown:
            raise HostError(f"unknown provider {unknown[0]!r} in --providers; known: {', '.join(CATALOG)}")
        self.served = list(dict.fromkeys(providers))
        self.host_id = host_id
        self.options = lattice
        self.member: Member | None = None
        self.components_running = ComponentSlots(DEFAULT_MAX_COMPONENTS)
        if early is not None and early.supervisor.state_dir != self.home:
            raise HostError(f"the providers started early keep their state in {early.supervisor.state_dir}, not in "
                            f"this host's {self.home}")
        self.registry = Registry.open(db_path or default_db(), keep_days=keep_days, cap_bytes=output_cap,
                                      lock=early.lock if early is not None else None)
        try:
            if early is not None:  # so that a failure from here on stops its daemons before the lock is let go
                self.supervisor = early.supervisor
                self.supervisor.attach(self.registry)
            self.links = LinkTable(self.registry)
            if early is None:
                self.supervisor = Supervisor(self.home, self.registry)
            self.own = LocalTransport(self.supervisor)
            transport: Transport = self.own if lattice is None else self._join(lattice)
            self.router = Router(self.links, self.registry, transport, own=self.own)
            self.supervisor.on_restart = self._relink  # a restart relinks through the router, now there is one
            self.cache = default_cache(self.home)
            self.runtime = ComponentRuntime(self.router, cache_dir=self.cache / "components")
            self.limit_components(max_components, component_timeout_s)
            self.supervisor.launch(self.served)
            for name in self.served:
                self.supervisor.ensure(name)
                self._relink(name)
            if self.member is not None:
                self.member.check_served()
        except BaseException:
            self.close()
            raise
        self._components: dict[str, LoadedComponent] = {}
        # How many bytes of each of a component's streams one invocation sends its caller.
        self.output_event_cap = OUTPUT_EVENT_CAP
        self._by_file: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def _join(self, options: LatticeOptions) -> Transport:
        """Join the lattice: its links replace what this host's registry remembers; rows go to its streams."""
        from worldrt.host.lattice import Lattice, LatticeTransport, Member

        for link in self.links.all():
            self.links.delete(link.link_id)
        self.lattice = Lattice(options, client_name=f"worldrt-host-{self.host_id}")
        self.member = Member(self.lattice, self.host_id, self.supervisor, self.links, self.served, self.home,
                             on_link=self._link_changed)
        self.registry.sink = self.member.publish
        return LatticeTransport(self.member)

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

    # links ---------------------------------------------------------------------------------------
    def _hands_links_to(self, provider: str) -> bool:
        """Whether this host hands ``provider`` its links now: on one machine always (starting its daemon);
        on a lattice only when it serves ``provider`` and its daemon runs."""
        return self.member is None or (provider in self.served and provider in self.supervisor.running())

    def _forward_link(self, link: HostLink) -> None:
        self.router.send(link.target_provider, "ReceiveLinkConfig", link.to_pb(), timeout_s=LINK_TIMEOUT_S,
                         record=False, own=True)

    def _forward_delete(self, link: HostLink) -> None:
        if link.target_provider not in self.supervisor.running():
            return
        try:
            self.router.send(link.target_provider, "DeleteLink", pb.LinkConfig(link_id=link.link_id),
                             timeout_s=LINK_TIMEOUT_S, record=False, own=True)
        except WorldError as exc:
            log.warning("could not tell %s to drop link %s: %s", link.target_provider, link.link_id, exc.message)

    def _link_changed(self, link: HostLink | None, previous: HostLink | None) -> None:
        """Hand a put or deleted link to the daemon of this host that it concerns (the lattice's watch calls
        this for every change of its links bucket)."""
        if previous is not None and (link is None or previous.target_provider != link.target_provider):
            self._forward_delete(previous)
        if link is not None and self.member is not None and self._hands_links_to(link.target_provider):
            try:
                self._forward_link(link)
            except WorldError as exc:
                log.warning("could not hand link %s to %s: %s", link.link_id, link.target_provider, exc.message)

    def _may_write_links(self) -> None:
        if self.options is not None and self.options.role is not None and self.options.role != "admin":
            raise PermissionDenied(f"the lattice's links are written with its admin credential, and host "
                                   f"{self.host_id} joined with its own: worldrt link put ... --lattice URL "
                                   f"--lattice-creds DIR/admin.cred")

    def put_link(self, request: pb.LinkConfig) -> pb.LinkReply:
        link = HostLink.from_pb(request)
        if self.member is not None:
            self._may_write_links()
            if request.secrets:
                raise LinkError("a lattice link names each secret by a key every host looks up in its own secrets "
                                "folder: use worldrt link put --lattice URL --secret NAME=KEY")
        self.links.validate(link, set(CATALOG))
        if self.member is not None:
            existed = self.member.put_link(link, {})
            self.links.put(link)  # this host's next call uses it without waiting for the watch
            return pb.LinkReply(link_id=link.link_id, existed=existed, links=len(self.links.all()))
        previous = self.links.get(link.link_id)
        if previous == link and link.target_provider in self.supervisor.running():
            return pb.LinkReply(link_id=link.link_id, existed=True, links=len(self.links.all()))
        self.links.put(link)
        if previous is not None and previous.target_provider != link.target_provider:
            self._forward_delete(previous)
        self._forward_link(link)
        return pb.LinkReply(link_id=link.link_id, existed=previous is not None, links=len(self.links.all()))

    def delete_link(self, request: pb.LinkConfig) -> pb.LinkReply:
        if self.member is not None:
            self._may_write_links()
            existed = self.member.delete_link(request.link_id)
            self.links.delete(request.link_id)
            return pb.LinkReply(link_id=request.link_id, existed=existed, links=len(self.links.all()))
        previous = self.links.delete(request.link_id)
        if previous is not None:
            self._forward_delete(previous)
        return pb.LinkReply(link_id=request.link_id, existed=previous is not None, links=len(self.links.all()))

    def _relink(self, provider: str) -> None:
        """A restarted provider gets a fresh channel and its links again (it lost them with its process)."""
        self.own.forget(provider)
        for link in self.links.all():
            if link.target_provider == provider:
                try:
                    self._forward_link(link)
                except WorldError as exc:
                    log.warning("could not relink %s to %s: %s", link.link_id, provider, exc.message)

    def list_links(self, request: host_pb.ListLinksRequest) -> host_pb.ListLinksReply:
        return host_pb.ListLinksReply(links=[link.public_pb() for link in self.links.all()])

    def ensure_link(self, source: str, interface: str, provider: str) -> None:
        """Link ``interface`` of ``source`` to ``provider`` unless a link (its own or ``*``) already resolves."""
        if self.links.resolve(source, interface) is None:
            self.put_link(pb.LinkConfig(source_component=source, interfaces=[interface], target_provider=provider))

    # providers -----------------------------------------------------------------------------------
    def list_providers(self, request: host_pb.ListProvidersRequest) -> host_pb.ListProvidersReply:
        return host_pb.ListProvidersReply(providers=[provider_state(r) for r in self.registry.providers()])

    def provider_status(self, request: host_pb.ProviderStatusRequest) -> host_pb.ProviderState:
        """Ask the provider (starting it on one machine) its capabilities; where and how it runs."""
        name = request.provider_id
        if name not in CATALOG:
            raise HostError(f"unknown provider {name!r}; known: {', '.join(CATALOG)}")
        caps = self.router.send(name, "Capabilities", pb.CapabilitiesRequest(), timeout_s=LINK_TIMEOUT_S)
        assert isinstance(caps, pb.CapabilitiesReply)
        if self.member is None:
            self.registry.set_status(name, "available", capabilities={
                "languages": list(caps.languages), "operations": list(caps.operations),
                **{c.name: json.loads(c.value_json) for c in caps.capabilities}})
        state = self.router.transport.describe(name)
        state.trit = state.trit or caps.trit
        state.capabilities.CopyFrom(caps)
        return state

    def provider_healthy(self, name: str) -> bool:
        """Whether a call to ``name`` can be served (on one machine: its daemon, started if need be, answers
        SERVING; on a lattice: a replica is fresh)."""
        return self.router.transport.healthy(name)

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
            startup_ms=r.get("startup_ms") or 0.0, replica=r.get("replica") or "")
            for r in rows])

    # provider calls (compatible HTTP APIs) ------------------------------------------------------------
    def call_provider(self, request: host_pb.ProviderCallRequest) -> host_pb.ProviderCallReply:
        """One generator operation through ``request.source``'s link, recorded like a component's import."""
        operation = _operation_of(request)
        if operation in PROCESS_CALLS:
            return self.process_call(request, operation)
        if operation == "read_process_output":
            raise HostError("read_process_output is a stream: call CallProviderStream")
        reply = self.router.call(OPERATIONS[("generator", operation)], getattr(request, operation),
                                 CallContext(request.verse_id, request.source))
        answer = host_pb.ProviderCallReply()
        getattr(answer, _REPLY_FIELD[type(reply)]).CopyFrom(reply)
        return answer

    def call_provider_stream(self, request: host_pb.ProviderCallRequest, on_event: InvokeSink | None = None,
                             ) -> pb.ExecutionResult | host_pb.ProcessOutputEnd:
        """``execute`` over ExecuteStream: each output event to ``on_event``; the result is returned.
        ``read_process_output``: each chunk to ``on_event``; where the read stopped is returned."""
        operation = _operation_of(request)
        if operation == "read_process_output":
            return self.process_output(request, on_event)
        if operation != "execute":
            raise HostError("CallProviderStream streams only execute and read_process_output")
        result = pb.ExecutionResult()
        for event in self.router.stream(request.execute, CallContext(request.verse_id, request.source)):
            if event.HasField("result"):
                result = event.result
            elif on_event is not None:
                on_event(host_pb.InvokeEvent(execution=event))
        return result

    # lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Leave the lattice (its queue groups first: the calls in flight finish), stop the providers it
        started and write every queued row."""
        if self.member is not None:
            self.member.leave()
            self.registry.sink = None
        for part in ("runtime", "router", "supervisor"):
            owned = getattr(self, part, None)
            if owned is not None:
                owned.close()
        self.registry.close()
        lattice = getattr(self, "lattice", None)
        if lattice is not None:
            lattice.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
