"""``worldrt verse``: the pipeline (a preset's providers driving a verse component), one provider's role
alone, and the multiverse orchestration around a pipeline.

The host chooses providers by role (an unhealthy one is replaced or the run is refused), checks their
GF(3) balance, links the component's interfaces to them (a named link per extra generator or validator,
switched by the component through ``lattice.set-link-name``), invokes it, and records the run.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from worldrt import telemetry
from worldrt.errors import InvalidArgument
from worldrt.examples import EXAMPLES_DIR
from worldrt.host.registry import Registry
from worldrt.host.runtime import built_once, source_digest
from worldrt.host.verse._multiverse import ORCHESTRATE_MODES, Multiverse, pick
from worldrt.host.verse._runs import record_run, registry_trits
from worldrt.host.verse._selection import (
    PRESETS,
    Selection,
    choose,
    gf3_sum,
    select_provider,
)
from worldrt.providers import CATALOG
from worldrt.v1 import host_pb, pb
from worldrt.wit import WIT_DIR

T = TypeVar("T")

EXAMPLES = EXAMPLES_DIR
RULES = ("ma_cross", "mean_revert", "breakout")
# Which (interface, link name) each role is reached over.
ROLE_LINKS: dict[str, tuple[tuple[str, str], ...]] = {
    "brancher": (("generator", "default"),),
    "executor": (("generator", "default"), ("generator", "baseline")),
    "baseline": (("generator", "baseline"),),
    "optimizer": (("coordinator", "default"),),
    "verifier": (("validator", "default"),),
    "attester": (("generator", "attest"), ("validator", "attest")),
}
# verse run --on PROVIDER: the role it plays alone.
SOLO_ROLE = {"morph": "brancher", "modal": "executor", "primeintellect": "optimizer", "gensyn": "verifier",
             "ritual": "attester"}
MAX_BRANCHES = 64
# What each preset needs, in the seed's select-provider terms.
PRESET_NEEDS = {"full": {"parallel": True, "optimize": True, "verify": True},
                "branch": {"parallel": True, "optimize": False, "verify": True},
                "inference": {"parallel": False, "optimize": True, "verify": True}}

EventSink = Callable[[host_pb.InvokeEvent], None]


class PipelineError(InvalidArgument):
    """A pipeline the host refuses or that failed; the message says why."""


def _stage(name: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in the span ``pipeline.NAME`` (nothing while tracing is off)."""
    with telemetry.span(f"pipeline.{name}"):
        return fn(*args)


def example_path(name: str, cache: Path) -> Path:
    """Where the build of example ``name`` lives: keyed by its sources, the WIT and the toolchain."""
    return cache / source_digest(EXAMPLES / name, WIT_DIR) / f"{name}.wasm"


def example_component(name: str, cache: Path) -> Path:
    """The example component ``name``, built once per change of its sources, the WIT or the toolchain."""
    return built_once(EXAMPLES / name, example_path(name, cache))


def pipeline_config(roles: set[str], branches: int, *, baseline: bool = True,
                    strategies: int | None = None) -> dict[str, Any]:
    """What the explorer's pipeline mode runs for these roles (see components/examples/explorer)."""
    count = branches if strategies is None else strategies
    return {
        "baseline": ({"link": "baseline" if {"baseline", "executor"} & roles else "default"}
                     if baseline else False),
        "branch": "brancher" in roles,
        "generator": bool({"brancher", "executor"} & roles),
        "strategies": [{"rule": RULES[i % len(RULES)]} for i in range(count)],
        "optimize": {"budget": 48, "group_size": 8, "max_async_level": 1} if "optimizer" in roles else None,
        "verify": {"sample": 4, "forged_fraction": 0.25} if "verifier" in roles else None,
        "attest": {"link": "attest"} if "attester" in roles else None,
        "steps": 252, "fee_bps": 5.0,
    }


class VerseHost(Protocol):
    """What a verse run needs of the host that runs it (the Host facade is one)."""

    registry: Registry
    cache: Path

    def provider_healthy(self, name: str) -> bool: ...
    def load_component(self, request: host_pb.LoadComponentRequest) -> host_pb.ComponentInfo: ...
    def put_link(self, request: pb.LinkConfig) -> pb.LinkReply: ...
    def invoke(self, request: host_pb.InvokeRequest,
               on_event: EventSink | None = None) -> host_pb.InvokeOutcome: ...


class VerseRunner:
    """Runs verses on a host (its registry, providers, links and component runtime)."""

    def __init__(self, host: VerseHost) -> None:
        self.host = host

    def healthy(self, provider: str) -> bool:
        return self.host.provider_healthy(provider)

    def select(self, preset: str) -> Selection:
        """The preset's providers: its preferred ones are started (when not running) side by side, so a cold
        host waits for the slowest start-up rather than for their sum; a substitute is asked only if needed."""
        if preset not in PRESETS:
            raise PipelineError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        preferred = list(dict.fromkeys(PRESETS[preset].values()))
        with ThreadPoolExecutor(max_workers=len(preferred), thread_name_prefix="provider-start") as pool:
            known = dict(zip(preferred, pool.map(self.healthy, preferred), strict=True))
        # A SelectionError (a role's provider is not healthy) goes out as it is: FailedPrecondition, not a
        # wrong argument.
        return choose(preset, lambda provider: known[provider] if provider in known else self.healthy(provider))

    def selection(self, preset: str) -> dict[str, Any]:
        """The seed's select-provider for the preset's needs, and the providers the preset would use now."""
        needs = PRESET_NEEDS.get(preset)
        if needs is None:
            raise PipelineError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        return {"preset": preset, "requirements": needs, "select_provider": select_provider(needs),
                **self.select(preset).as_dict()}

    def _component(self, path: str, on_event: EventSink | None = None,
                   loading: Future[host_pb.ComponentInfo] | None = None) -> host_pb.ComponentInfo:
        """The loaded component (``loading``'s, when it was started beforehand with ``_load``)."""
        def say(text: str) -> None:
            if on_event is not None:
                on_event(host_pb.InvokeEvent(log=text))

        if not path and not example_path("explorer", self.host.cache / "examples").exists():
            say("building the explorer example with componentize-py (once, about 10 s)")
        info = loading.result() if loading is not None else self._load(path)
        say(f"component {info.name}: {'from the compile cache' if info.from_cache else 'compiled'} "
            f"in {info.load_ms:.0f} ms")
        return info

    def _load(self, path: str) -> host_pb.ComponentInfo:
        if not path:
            path = str(example_component("explorer", self.host.cache / "examples"))
        return self.host.load_component(host_pb.LoadComponentRequest(path=path))

    def _link(self, component: str, role_providers: dict[str, str]) -> None:
        for role, provider in role_providers.items():
            for interface, name in ROLE_LINKS[role]:
                self.host.put_link(pb.LinkConfig(
                    link_id=f"{component}/{interface}/{name}", source_component=component, name=name,
                    interfaces=[interface], target_provider=provider))

    def _invoke(self, info: host_pb.ComponentInfo, verse_id: int, config: dict[str, Any],
                on_event: EventSink | None) -> tuple[dict[str, Any], float, float]:
        cost = 0.0

        def on_call(event: host_pb.InvokeEvent) -> None:
            nonlocal cost
            if event.HasField("call"):
                cost += event.call.cost_units
            if on_event is not None:
                on_event(event)

        started = time.perf_counter()
        outcome = self.host.invoke(host_pb.InvokeRequest(component_id=info.component_id, verse_id=verse_id,
                                                         args=json.dumps({"pipeline": config})), on_call)
        duration_ms = (time.perf_counter() - started) * 1000
        if not outcome.ok:
            raise PipelineError(f"verse {verse_id}: {outcome.value}")
        return json.loads(outcome.value), cost, duration_ms

    def pipeline(self, verse_id: int, preset: str = "full", branches: int = 3, component: str = "",
                 allow_unbalanced: bool = False, on_event: EventSink | None = None) -> dict[str, Any]:
        """One run; with tracing on, one span ``verse pipeline`` whose children are its stages (select, load,
        link, the component's run with its provider calls, record)."""
        with telemetry.span("verse pipeline", {"worldrt.verse_id": verse_id, "worldrt.preset": preset,
                                                "worldrt.branches": branches}):
            return self._pipeline(verse_id, preset, branches, component, allow_unbalanced, on_event)

    def _pipeline(self, verse_id: int, preset: str, branches: int, component: str, allow_unbalanced: bool,
                  on_event: EventSink | None) -> dict[str, Any]:
        if not 1 <= branches <= MAX_BRANCHES:
            raise PipelineError(f"--branches must be between 1 and {MAX_BRANCHES}, got {branches}")
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="component-load") as pool:
            # The component loads (from the compile cache, or compiled) while the providers start.
            loading = pool.submit(contextvars.copy_context().run, _stage, "load", self._load, component)
            with telemetry.span("pipeline.select"):
                selection = self.select(preset)
                registered = registry_trits(self.host.registry)
            trits = [registered[p] for p in selection.providers]
            total = gf3_sum(selection.providers, registered)
            if total != 0 and not allow_unbalanced:
                raise PipelineError(f"preset {preset} selects {', '.join(selection.providers)} whose registered "
                                    f"trits {' '.join(f'{t:+d}' for t in trits)} sum to {total:+d} in GF(3), not 0: "
                                    f"refused (pass --allow-unbalanced to run it anyway)")
            info = self._component(component, on_event, loading)
        _stage("link", self._link, info.name, selection.by_role)
        config = pipeline_config(set(selection.by_role), branches)
        result, cost, invoke_ms = _stage("run", self._invoke, info, verse_id, config, on_event)
        baseline = (result.get("baseline") or {}).get("value")
        winner = (result.get("winner") or {}).get("value")
        duration_ms = (time.perf_counter() - started) * 1000
        with telemetry.span("pipeline.record"):
            run_id = record_run(self.host.registry, verse_id=str(verse_id), preset=preset,
                                providers=selection.providers, baseline_value=baseline, winner_value=winner,
                                cost_units=cost, duration_ms=duration_ms, allow_unbalanced=allow_unbalanced,
                                result=result)
        return {"run_id": run_id, "verse_id": verse_id, "preset": preset, "component": info.name,
                "selection": selection.as_dict(), "providers": selection.providers, "trits": trits,
                "gf3_sum": total, "balanced": total == 0, "baseline_value": baseline,
                "winner_value": winner, "wev": result.get("wev"), "cost_units": round(cost, 6),
                "duration_ms": round(duration_ms, 1), "invoke_ms": round(invoke_ms, 1), "result": result}

    def solo(self, verse_id: int, provider: str, component: str = "",
             on_event: EventSink | None = None) -> dict[str, Any]:
        """One provider's role alone on the verse (the seed's verse-on-*)."""
        role = SOLO_ROLE.get(provider)
        if role is None:
            raise PipelineError(f"unknown provider {provider!r}; known: {', '.join(CATALOG)}")
        if not self.healthy(provider):
            raise PipelineError(f"provider {provider} is not healthy: see worldrt provider status {provider}")
        info = self._component(component, on_event)
        self._link(info.name, {role: provider})
        config = pipeline_config({role}, 3, baseline=role == "executor",
                                 strategies={"brancher": 3, "executor": 0}.get(role, 1))
        result, cost, invoke_ms = self._invoke(info, verse_id, config, on_event)
        return {"verse_id": verse_id, "provider": provider, "role": role, "trit": CATALOG[provider].trit,
                "cost_units": round(cost, 6), "duration_ms": round(invoke_ms, 1), "result": result}

    def orchestrate(self, verse_id: int, mode: str, preset: str = "full", branches: int = 3,
                    stake: float = 100.0, owner: str = "treasury", component: str = "",
                    allow_unbalanced: bool = False, on_event: EventSink | None = None) -> dict[str, Any]:
        """push_down the owner's stake into one child verse per branch, run the pipeline, resolve to the
        branch MODE picks from the oracle's values, and pull the survivor's balance back up."""
        if mode not in ORCHESTRATE_MODES:
            raise PipelineError(f"unknown mode {mode!r}; modes: {', '.join(ORCHESTRATE_MODES)}")
        run = self.pipeline(verse_id, preset, branches, component, allow_unbalanced, on_event)
        candidates = run["result"].get("candidates") or []
        values = {f"b{i}-{c['rule']}": float(c["value"]) for i, c in enumerate(candidates) if c.get("verified")}
        if not values:
            raise PipelineError("the pipeline produced no verified branch to orchestrate over")
        ledger = Multiverse.create(self.host.registry, f"verse-{verse_id}-{run['run_id'][:12]}",
                                   list(values), {owner: stake})
        before = {o: ledger.payoff(owner, o) for o in values}
        split = ledger.partition(ledger.root, [{outcome} for outcome in values])
        ledger.push_down(owner, ledger.root, split, stake)
        pushed = {o: ledger.payoff(owner, o) for o in values}
        observed = pick(mode, values)
        ledger.resolve(observed)
        pulled = ledger.pull_up_all(owner, split)
        after = ledger.payoff(owner, observed)
        return {"verse_id": verse_id, "mode": mode, "mode_rule": ORCHESTRATE_MODES[mode], "run_id": run["run_id"],
                "multiverse": ledger.name, "owner": owner, "stake": stake, "branch_values": values,
                "observed": observed, "payoff_before": before, "payoff_after_push_down": pushed,
                "pulled_up": pulled, "payoff_after_pull_up": after,
                "invariant_held": all(abs(before[o] - pushed[o]) < 1e-9 for o in values)
                and abs(before[observed] - after) < 1e-9,
                "wev": run["wev"], "pipeline": {k: run[k] for k in ("preset", "providers", "gf3_sum", "wev")}}
