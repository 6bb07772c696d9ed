"""morph (+1, generator): snapshot and branch of live sandboxed interpreters on this machine (the local
Infinibranch engine, the default), or Morph Cloud's REST API (``backend=morphcloud``)."""

from typing import TYPE_CHECKING, Any

from worldrt.errors import InvalidArgument
from worldrt.providers import Provider, ProviderOptions
from worldrt.providers.morph._engine import FrozenSnapshot, Infinibranch
from worldrt.providers.morph._provider import MorphProvider

if TYPE_CHECKING:
    from worldrt.providers.morph._morphcloud import MorphCloudProvider

BACKENDS = ("local", "morphcloud")


def PROVIDER(options: ProviderOptions) -> Provider:
    """The provider of the backend ``options.values["backend"]`` names (default ``local``)."""
    backend = options.values.get("backend", "local")
    if backend == "local":
        return MorphProvider(options)
    if backend == "morphcloud":
        from worldrt.providers.morph._morphcloud import MorphCloudProvider

        return MorphCloudProvider(options)
    raise InvalidArgument(f"morph has no backend {backend!r}; backends: {', '.join(BACKENDS)}")


def __getattr__(name: str) -> Any:
    # The Morph Cloud backend (httpx, and the rich/click its CLI module pulls in) is imported on first use:
    # the local daemon, which every pipeline starts, never needs it.
    if name != "MorphCloudProvider":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from worldrt.providers.morph._morphcloud import MorphCloudProvider

    globals()[name] = MorphCloudProvider
    return MorphCloudProvider


__all__ = ["MorphProvider", "MorphCloudProvider", "Infinibranch", "FrozenSnapshot", "PROVIDER", "BACKENDS"]
