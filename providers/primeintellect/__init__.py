"""primeintellect (0, coordinator): Optimize by async group-relative policy optimization on this machine."""

from typing import TYPE_CHECKING

from worldrt.faces import lazy_names
from worldrt.providers.primeintellect._program import grpo_source, program_for

if TYPE_CHECKING:
    from worldrt.providers.primeintellect._engine import AsyncGRPO, Hyperparameters, Run
    from worldrt.providers.primeintellect._provider import PROVIDER, PrimeIntellectProvider

# The engine (numpy) is imported on first use: a verifier that needs only the program's text does not load it.
_LAZY = {"AsyncGRPO": "_engine", "Hyperparameters": "_engine", "Run": "_engine",
         "PrimeIntellectProvider": "_provider", "PROVIDER": "_provider"}
__getattr__ = lazy_names(__name__, _LAZY)

__all__ = ["PrimeIntellectProvider", "AsyncGRPO", "Hyperparameters", "Run", "program_for", "grpo_source", "PROVIDER"]
