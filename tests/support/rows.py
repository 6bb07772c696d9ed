"""Invocation rows read back from a registry file, and matched against the calls a client saw."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import duckdb


def f32(value: float) -> float:
    """``value`` as the FLOAT column latency_ms stores it."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def invocation_rows(db: Path, verse: int) -> list[tuple[str, float]]:
    """(invocation_id, latency_ms) of every row of ``verse`` in the DuckDB file ``db``."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT invocation_id, latency_ms FROM provider_invocations WHERE verse_id = ?",
                           [str(verse)]).fetchall()
    finally:
        con.close()


def missing_rows(latencies: list[float], rows: list[tuple[str, float]]) -> int:
    """How many of the calls a client saw (by their latencies) have no row."""
    return sum((Counter(f32(x) for x in latencies) - Counter(latency for _, latency in rows)).values())
