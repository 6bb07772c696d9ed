"""The wasm runtime: wasmtime's engine, the component loader and its compile cache, the world (its
operations, WIT names and the fit check of a component against it), the WIT↔protobuf codec, the host
functions a component imports, and the toolchain that builds components. A ``Router`` (the lattice's)
makes the provider calls."""

from worldrt.host.runtime._codec import from_wit, to_wit
from worldrt.host.runtime._components import (
    DEFAULT_CACHE_DIR,
    ComponentCache,
    ComponentLoader,
    LoadedComponent,
    new_engine,
)
from worldrt.host.runtime._errors import (
    ComponentError,
    ComponentFault,
    ComponentTimeout,
    ComponentTrap,
    GuestError,
    InvocationError,
)
from worldrt.host.runtime._fit import check_component
from worldrt.host.runtime._invoke import ComponentRuntime, Invocation, Limits
from worldrt.host.runtime._toolchain import (
    BuildResult,
    ComponentInfo,
    build_component,
    build_js_component,
    built_once,
    inspect_component,
    source_digest,
)
from worldrt.host.runtime._values import ImportCodec
from worldrt.host.runtime._world import (
    HOST_INTERFACES,
    LOG_LEVELS,
    OPERATIONS,
    PROVIDER_INTERFACES,
    WIT_PACKAGE,
    WIT_VERSION,
    WIT_VERSIONS,
    CallContext,
    Operation,
    Router,
    interface_version,
    wit_interface,
)

__all__ = [
    # running components
    "ComponentRuntime", "Invocation", "Limits", "LoadedComponent", "ComponentLoader", "ComponentCache", "new_engine",
    "DEFAULT_CACHE_DIR",
    # the world and its calls
    "OPERATIONS", "Operation", "CallContext", "Router", "wit_interface", "interface_version",
    "WIT_PACKAGE", "WIT_VERSION", "WIT_VERSIONS",
    "PROVIDER_INTERFACES", "HOST_INTERFACES", "LOG_LEVELS", "check_component", "from_wit", "to_wit",
    "ImportCodec",
    # building and inspecting
    "build_component", "build_js_component", "built_once", "inspect_component", "source_digest", "BuildResult",
    "ComponentInfo",
    # errors
    "ComponentFault", "ComponentError", "InvocationError", "GuestError", "ComponentTrap", "ComponentTimeout",
]
