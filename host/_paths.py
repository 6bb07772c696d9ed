"""Where the host keeps its state by default: light enough for the CLI to import before it knows whether a
host is running (the Host itself imports DuckDB and wasmtime)."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("WORLDRT_STATE_DIR", ".worldrt"))


def default_db() -> Path:
    return Path(os.environ.get("WORLDRT_DB") or default_home() / "world.duckdb")


def default_host_address(home: Path) -> str:
    return f"unix:{(home / 'host.sock').resolve()}"
