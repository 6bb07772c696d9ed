"""primeintellect (0, coordinator): Optimize by async group-relative policy optimization on this machine."""

from ._engine import AsyncGRPO, Hyperparameters, Run, program_for
from ._provider import PrimeIntellectProvider

PROVIDER = PrimeIntellectProvider

__all__ = ["PrimeIntellectProvider", "AsyncGRPO", "Hyperparameters", "Run", "program_for", "PROVIDER"]
