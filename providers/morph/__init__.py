"""morph (+1, generator): snapshot and branch of live sandboxed interpreters on this machine (the local
Infinibranch engine, the default), or Morph Cloud's REST API (``backend=morphcloud``)."""

from worldrt.errors import InvalidArgument
from worldrt.providers import Provider, ProviderOptions
from worldrt.providers.morph._engine import FrozenSnapshot, Infinibranch
from worldrt.providers.morph._morphcloud import MorphCloudProvider
from worldrt.providers.morph._provider import MorphProvider

BACKENDS = ("local", "morphcloud")


def PROVIDER(options: ProviderOptions) -> Provider:
    """The provider of the backend ``options.values["backend"]`` names (default ``local``)."""
    backend = options.values.get("backend", "local")
    if backend == "local":
        return MorphProvider(options)
    if backend == "morphcloud":
        return MorphCloudProvider(options)
    raise InvalidArgument(f"morph has no backend {backend!r}; backends: {', '.join(BACKENDS)}")


__all__ = ["MorphProvider", "MorphCloudProvider", "Infinibranch", "FrozenSnapshot", "PROVIDER", "BACKENDS"]
