"""The registry: one DuckDB file written by one process (the host).

Tables ``runtime_providers``, ``provider_invocations`` and ``provider_links`` are the seed's, column
for column; ``provider_daemons`` records where each local engine runs. Invocation rows are queued by
the call path and written in batches by a background thread (one multi-row INSERT per batch).
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from worldrt.providers import CATALOG

SCHEMA = """
CREATE TABLE IF NOT EXISTS runtime_providers (
    provider_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    trit INT CHECK (trit IN (-1, 0, 1)),
    capabilities JSON,
    api_endpoint VARCHAR,
    auth_method VARCHAR,
    status VARCHAR DEFAULT 'available',
    registered_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS provider_invocations (
    invocation_id VARCHAR PRIMARY KEY,
    provider_id VARCHAR REFERENCES runtime_providers(provider_id),
    operation VARCHAR,
    verse_id VARCHAR,
    input_params JSON,
    output_result JSON,
    latency_ms FLOAT,
    cost_units FLOAT,
    invoked_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS provider_links (
    link_id VARCHAR PRIMARY KEY,
    source_component VARCHAR,
    target_provider VARCHAR REFERENCES runtime_providers(provider_id),
    link_config JSON,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS provider_daemons (
    provider_id VARCHAR PRIMARY KEY,
    address VARCHAR,
    pid INT,
    backend VARCHAR,
    restarts INT DEFAULT 0,
    last_error VARCHAR,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS invocations_by_verse ON provider_invocations (verse_id);
CREATE INDEX IF NOT EXISTS invocations_by_provider ON provider_invocations (provider_id, operation);
"""

# The seed's three rows, verbatim, then the two providers the seed's registry describes but did not insert.
SEED_PROVIDERS = """
INSERT INTO runtime_providers VALUES
('morph', 'Morph Labs Infinibranch', 1,
 '{"snapshot": true, "branch": true, "languages": ["python", "js", "rust", "cpp"]}',
 'https://api.cloud.morph.so/v1', 'bearer', 'available', NOW()),
('primeintellect', 'PrimeIntellect Distributed RL', 0,
 '{"training": true, "rl": true, "max_params": "100B+", "async": true}',
 'https://api.primeintellect.ai/v1', 'bearer', 'available', NOW()),
('gensyn', 'Gensyn Decentralized ML', -1,
 '{"verification": true, "trustless": true, "protocol": "ethereum_rollup"}',
 'https://api.gensyn.ai/v1', 'bearer', 'available', NOW())
ON CONFLICT DO NOTHING;
INSERT INTO runtime_providers VALUES
('modal', 'Modal Labs Sandboxes', 1,
 '{"sandbox": true, "cold_start": "<1s", "languages": ["python", "any container"]}',
 'https://api.modal.com', 'bearer', 'available', NOW()),
('ritual', 'Ritual Infernet', -1,
 '{"inference": true, "verification": "attested re-execution", "endpoint": "self-hosted Infernet node"}',
 NULL, 'bearer', 'available', NOW())
ON CONFLICT DO NOTHING;
"""

_COLUMNS = ("invocation_id", "provider_id", "operation", "verse_id", "input_params", "output_result",
            "latency_ms", "cost_units", "invoked_at")


class RegistryError(RuntimeError):
    """The registry file cannot be used (held by another process, corrupt, unwritable)."""


def _as_json(value: Any) -> str:
    if isinstance(value, Message):
        value = MessageToDict(value, preserving_proto_field_name=True)
    return json.dumps(value, default=str)


@dataclass(frozen=True)
class Invocation:
    """One provider call. Params and result may be protobuf messages: they become JSON in the writer."""

    provider_id: str
    operation: str
    verse_id: str
    input_params: Any
    output_result: Any
    latency_ms: float
    cost_units: float
    invoked_at: float

    def row(self) -> tuple[Any, ...]:
        return (uuid.uuid4().hex, self.provider_id, self.operation, self.verse_id,
                _as_json(self.input_params), _as_json(self.output_result),
                self.latency_ms, self.cost_units, self.invoked_at)


def _holder(lock_path: Path) -> str:
    try:
        return lock_path.read_text().strip() or "another process"
    except OSError:
        return "another process"


class Registry:
    """Open with ``Registry.open(path)``; ``close()`` flushes every queued row."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, lock_fd: int) -> None:
        self.path = path
        self._con = con
        self._lock_fd = lock_fd
        self._db_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Invocation | None] = queue.SimpleQueue()
        self._written = 0
        self._writer = threading.Thread(target=self._write_forever, name="registry-writer", daemon=True)
        self._writer.start()

    @classmethod
    def open(cls, path: str | Path) -> "Registry":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RegistryError(f"{path} is in use by {_holder(lock_path)}; stop it or use that host") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({' '.join(sys.argv[:4])})".encode())
        try:
            con = duckdb.connect(str(path))
            con.execute(SCHEMA)
            con.execute(SEED_PROVIDERS)
        except duckdb.Error as exc:
            os.close(fd)
            first = str(exc).splitlines()[0]
            raise RegistryError(f"{path} cannot be opened as a DuckDB registry ({first}); "
                                f"move it away or pass --db") from None
        return cls(path, con, fd)

    # writes --------------------------------------------------------------------------------------
    def record(self, invocation: Invocation) -> None:
        """Queue one invocation row; it is written within a batch interval, and always before close()."""
        self._queue.put(invocation)

    def _write_forever(self, interval_s: float = 0.05, max_batch: int = 5000) -> None:
        while True:
            first = self._queue.get()
            batch = [] if first is None else [first]
            done = first is None
            deadline = time.monotonic() + interval_s
            while not done and len(batch) < max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    done = True
                else:
                    batch.append(item)
            if batch:
                self._insert(batch)
            if done:
                return

    def _insert(self, batch: list[Invocation]) -> None:
        columns = [list(c) for c in zip(*(inv.row() for inv in batch))]
        columns[-1] = [datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None) for t in columns[-1]]
        select = ", ".join(f"unnest(${i + 1})" for i in range(len(_COLUMNS)))
        with self._db_lock:
            self._con.execute(f"INSERT INTO provider_invocations ({', '.join(_COLUMNS)}) SELECT {select}", columns)
        self._written += len(batch)

    def flush(self) -> None:
        """Write everything queued so far (by restarting the writer after it drains)."""
        self._queue.put(None)
        self._writer.join()
        self._writer = threading.Thread(target=self._write_forever, name="registry-writer", daemon=True)
        self._writer.start()

    @property
    def written(self) -> int:
        return self._written

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join()
        with self._db_lock:
            self._con.close()
        os.close(self._lock_fd)

    # reads and small writes ----------------------------------------------------------------------
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._db_lock:
            cur = self._con.execute(sql, list(params))
            names = [d[0] for d in cur.description] if cur.description else []
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._db_lock:
            self._con.execute(sql, list(params))

    def providers(self) -> list[dict[str, Any]]:
        return self.query("""
            SELECT p.provider_id, p.name, p.trit, p.status, p.api_endpoint, p.auth_method, p.capabilities,
                   d.address, d.pid, d.backend, d.restarts, d.last_error
            FROM runtime_providers p LEFT JOIN provider_daemons d USING (provider_id)
            ORDER BY p.trit DESC, p.provider_id""")

    def set_status(self, provider_id: str, status: str, *, address: str | None = None, pid: int | None = None,
                   restarts: int | None = None, last_error: str | None = None,
                   capabilities: dict[str, Any] | None = None) -> None:
        if provider_id not in CATALOG:
            raise RegistryError(f"unknown provider {provider_id!r}")
        with self._db_lock:
            self._con.execute("UPDATE runtime_providers SET status = ? WHERE provider_id = ?", [status, provider_id])
            if capabilities is not None:
                self._con.execute("UPDATE runtime_providers SET capabilities = ? WHERE provider_id = ?",
                                  [json.dumps(capabilities), provider_id])
            self._con.execute("""
                INSERT INTO provider_daemons (provider_id, address, pid, backend, restarts, last_error, updated_at)
                VALUES (?, ?, ?, 'local', COALESCE(?, 0), ?, now())
                ON CONFLICT (provider_id) DO UPDATE SET
                    address = COALESCE(excluded.address, provider_daemons.address),
                    pid = COALESCE(excluded.pid, provider_daemons.pid),
                    restarts = COALESCE(?, provider_daemons.restarts),
                    last_error = excluded.last_error, updated_at = now()""",
                              [provider_id, address, pid, restarts, last_error, restarts])

    def put_link(self, link_id: str, source_component: str, target_provider: str, config: dict[str, Any]) -> None:
        with self._db_lock:
            self._con.execute("""
                INSERT INTO provider_links (link_id, source_component, target_provider, link_config)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (link_id) DO UPDATE SET source_component = excluded.source_component,
                    target_provider = excluded.target_provider, link_config = excluded.link_config""",
                              [link_id, source_component, target_provider, json.dumps(config, sort_keys=True)])

    def delete_link(self, link_id: str) -> bool:
        with self._db_lock:
            found = self._con.execute("SELECT 1 FROM provider_links WHERE link_id = ?", [link_id]).fetchone()
            self._con.execute("DELETE FROM provider_links WHERE link_id = ?", [link_id])
        return found is not None

    def links(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT link_id, source_component, target_provider, link_config, created_at "
                          "FROM provider_links ORDER BY link_id")
        for row in rows:
            row["link_config"] = json.loads(row["link_config"]) if row["link_config"] else {}
        return rows

    def recent_invocations(self, limit: int = 20, verse_id: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE verse_id = ?", [verse_id]) if verse_id else ("", [])
        return self.query(f"SELECT * FROM provider_invocations {where} ORDER BY invoked_at DESC LIMIT ?",
                          [*params, limit])
