"""The world-runtime host and the ``worldrt`` command line."""

from ._analytics import AnalyticsError, efficiency, plot_efficiency, plot_wev, wev_over_time, wev_per_cost
from ._components import DEFAULT_CACHE_DIR, LoadedComponent
from ._client import RemoteHost, Session
from ._direct_router import DirectRouter
from ._errors import ComponentError, ComponentTimeout, ComponentTrap, GuestError, InvocationError
from ._gf3 import Gf3Error, audit, record_run, registry_trits, runs
from ._host import Host, HostError, default_db, default_home
from ._link_router import LinkRouter
from ._links import HostLink, LinkTable
from ._multiverse import ORCHESTRATE_MODES, Multiverse, MultiverseError, Partition, Verse, pick
from ._registry import Registry, RegistryError
from ._router import OPERATIONS, CallContext, Operation, ProviderCallError, Router, wit_interface
from ._selection import (PRESETS, Selection, SelectionError, balanced, choose, gf3_sum, preset,
                         select_provider)
from ._service import serve_host
from ._supervisor import Supervisor, SupervisorError
from ._toolchain import BuildResult, ComponentInfo, build_component, inspect_component
from ._wasm_runtime import ComponentRuntime, Invocation, Limits

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
