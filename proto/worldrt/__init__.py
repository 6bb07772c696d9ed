"""world-runtime: capability providers for portable verse programs.

The lowest layer: ``worldrt.v1`` (the generated contract), ``worldrt.errors`` (the one error root and its
kinds) and ``worldrt.descriptors``; the provider SDK is ``worldrt.providers``, the host ``worldrt.host``,
the Python client ``worldrt.client`` and ``worldrt.testing`` a runtime for your own tests.

``worldrt.Client`` and ``worldrt.AsyncClient`` are the client's, named here for convenience: they are
imported on first use, so ``import worldrt`` stays cheap and this layer imports nothing above it.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worldrt.client import AsyncClient, Client

__version__ = "0.1.0"

# Names of the client room re-exported here, resolved on first use (the only imports upward from this layer).
_CLIENT = ("Client", "AsyncClient")


def __getattr__(name: str) -> Any:
    if name not in _CLIENT:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from worldrt import client

    value = getattr(client, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_CLIENT})


__all__ = ["__version__", "Client", "AsyncClient"]
