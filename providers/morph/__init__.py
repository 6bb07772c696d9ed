"""morph (+1, generator): snapshot and branch of live sandboxed interpreters on this machine."""

from ._engine import FrozenSnapshot, Infinibranch
from ._provider import MorphProvider

PROVIDER = MorphProvider

__all__ = ["MorphProvider", "Infinibranch", "FrozenSnapshot", "PROVIDER"]
