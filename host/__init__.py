"""The world-runtime host and the ``worldrt`` command line."""

from worldrt.host.verse._analytics import AnalyticsError, efficiency, plot_efficiency, plot_wev, wev_over_time, wev_per_cost
from worldrt.host.runtime._components import DEFAULT_CACHE_DIR, LoadedComponent
from worldrt.host._client import RemoteHost, Session
from worldrt.host.lattice._direct_router import DirectRouter
from worldrt.host.runtime._errors import ComponentError, ComponentTimeout, ComponentTrap, GuestError, InvocationError
from worldrt.host.verse._runs import Gf3Error, audit, record_run, registry_trits, runs
from worldrt.host._host import Host, HostError, default_db, default_home
from worldrt.host.lattice._link_router import LinkRouter
from worldrt.host.lattice._links import HostLink, LinkTable
from worldrt.host.verse._multiverse import ORCHESTRATE_MODES, Multiverse, MultiverseError, Partition, Verse, pick
from worldrt.host.registry._store import Registry, RegistryError
from worldrt.host.runtime._world import OPERATIONS, CallContext, Operation, ProviderCallError, Router, wit_interface
from worldrt.host.verse._selection import (PRESETS, Selection, SelectionError, balanced, choose, gf3_sum, preset,
                         select_provider)
from worldrt.host._service import serve_host
from worldrt.host.lattice._supervisor import Supervisor, SupervisorError
from worldrt.host.runtime._toolchain import BuildResult, ComponentInfo, build_component, inspect_component
from worldrt.host.runtime._invoke import ComponentRuntime, Invocation, Limits

__all__ = [
    # the host
    "Host", "HostError", "Session", "RemoteHost", "serve_host", "default_db", "default_home",
    "Registry", "RegistryError", "Supervisor", "SupervisorError", "LinkTable", "HostLink", "LinkRouter",
    # running components
    "ComponentRuntime", "LoadedComponent", "Limits", "Invocation", "DEFAULT_CACHE_DIR",
    # routing their imports
    "Router", "CallContext", "ProviderCallError", "Operation", "OPERATIONS", "wit_interface", "DirectRouter",
    # building and inspecting
    "build_component", "inspect_component", "BuildResult", "ComponentInfo",
    # selection, pipeline runs and GF(3), multiverse ledger, analytics
    "select_provider", "preset", "PRESETS", "choose", "Selection", "SelectionError", "gf3_sum", "balanced",
    "record_run", "runs", "audit", "registry_trits", "Gf3Error",
    "Multiverse", "MultiverseError", "Verse", "Partition", "pick", "ORCHESTRATE_MODES",
    "wev_over_time", "efficiency", "wev_per_cost", "plot_wev", "plot_efficiency", "AnalyticsError",
    # errors
    "ComponentError", "InvocationError", "GuestError", "ComponentTrap", "ComponentTimeout",
]
