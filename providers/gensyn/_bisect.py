"""Bisection to a divergence point of claimed trajectories, in ceil(log2(hi - lo)) comparisons."""

from __future__ import annotations

from collections.abc import Callable


def bisect_divergence(agree: Callable[[int], bool], lo: int, hi: int) -> tuple[int, int]:
    """Given ``agree(lo)`` and not ``agree(hi)``, return ``(k, comparisons)`` with agree(k-1) and not agree(k)."""
    if not lo < hi:
        raise ValueError("bisection needs lo < hi")
    comparisons = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        comparisons += 1
        if agree(mid):
            lo = mid
        else:
            hi = mid
    return hi, comparisons
