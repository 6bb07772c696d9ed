"""primeintellect (0, coordinator): Optimize by async group-relative policy optimization on this machine."""

from worldrt.providers.primeintellect._engine import (
    AsyncGRPO,
    Hyperparameters,
    Run,
    program_for,
)
from worldrt.providers.primeintellect._provider import PrimeIntellectProvider

PROVIDER = PrimeIntellectProvider

__all__ = ["PrimeIntellectProvider", "AsyncGRPO", "Hyperparameters", "Run", "program_for", "PROVIDER"]
