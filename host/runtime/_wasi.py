"""Which WASI interfaces the host's linker supplies (wasmtime's WASI 0.2, ``Linker.add_wasip2``), and what a
component that imports another one can do about it."""

from __future__ import annotations

# Every interface wasmtime-wasi's p2 linker defines. wasi:http is not among them: components get no network.
WASI_P2: dict[str, tuple[str, ...]] = {
    "cli": ("environment", "exit", "stdin", "stdout", "stderr", "terminal-input", "terminal-output",
            "terminal-stdin", "terminal-stdout", "terminal-stderr"),
    "clocks": ("monotonic-clock", "wall-clock"),
    "filesystem": ("preopens", "types"),
    "io": ("error", "poll", "streams"),
    "random": ("insecure", "insecure-seed", "random"),
    "sockets": ("instance-network", "ip-name-lookup", "network", "tcp", "tcp-create-socket", "udp",
                "udp-create-socket"),
}
WASI_VERSION = "0.2"
WASI_SUMMARY = f"WASI {WASI_VERSION}.x ({', '.join(WASI_P2)})"

# The componentize-js (and jco componentize) features that bring in a WASI package the host lacks.
_JS_FEATURES = {"http": "--disable http fetch-event"}


def split_name(name: str) -> tuple[str, str, str]:
    """``("wasi:http", "types", "0.2.10")`` for ``wasi:http/types@0.2.10`` (empty parts where absent)."""
    package, _, rest = name.partition("/")
    interface, _, version = rest.partition("@")
    return package, interface, version


def wasi_supplied(name: str) -> bool:
    """Whether the linker satisfies an import of the WASI interface ``name`` (any 0.2.x version: wasmtime
    matches semver-compatible versions)."""
    package, interface, version = split_name(name)
    if not package.startswith("wasi:"):
        return False
    compatible = version == WASI_VERSION or version.startswith(WASI_VERSION + ".")
    return compatible and interface in WASI_P2.get(package.removeprefix("wasi:"), ())


def advice(names: list[str]) -> str:
    """What to do about imports the host does not supply: one sentence per kind of import."""
    said: list[str] = []
    for package in sorted({split_name(n)[0] for n in names}):
        short = package.removeprefix("wasi:")
        if package.startswith("wasi:") and short in _JS_FEATURES:
            said.append(f"this host gives components no {package}; a componentize-js or jco componentize build "
                        f"leaves it out with `{_JS_FEATURES[short]}`, and other toolchains when the code "
                        f"never uses it")
        elif package.startswith("wasi:") and short in WASI_P2:
            versions = sorted({split_name(n)[2] for n in names if split_name(n)[0] == package})
            said.append(f"{package} is served at version {WASI_VERSION}.x only, not {', '.join(versions)}: "
                        f"build for WASI {WASI_VERSION} (wasm32-wasip2)")
        elif package.startswith("wasi:"):
            said.append(f"{package} is not part of WASI {WASI_VERSION} as this host serves it: build without it")
        else:
            said.append(f"{package} is no interface of this host: drop it from the component's world")
    return "; ".join(said)
