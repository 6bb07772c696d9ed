"""morph (+1, generator): snapshot and branch of live sandboxed interpreters on this machine."""

from worldrt.providers.morph._engine import FrozenSnapshot, Infinibranch
from worldrt.providers.morph._provider import MorphProvider

PROVIDER = MorphProvider

__all__ = ["MorphProvider", "Infinibranch", "FrozenSnapshot", "PROVIDER"]
