"""Package faces that load their heavy modules on first use (PEP 562): a command that needs one name of a
package does not pay for the rest (DuckDB, wasmtime, the NATS client)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The package's module ``__getattr__``: each name in ``where`` (name -> submodule, e.g. ``"_store"``) is
    imported from that submodule of ``package`` on first use and kept in the package."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
