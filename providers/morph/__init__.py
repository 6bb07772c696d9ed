"""morph (+1, generator): snapshot and branch of live sandboxed interpreters on this machine."""

from ._engine import Infinibranch
from ._provider import MorphProvider, available_languages

PROVIDER = MorphProvider

__all__ = ["MorphProvider", "Infinibranch", "available_languages", "PROVIDER"]
