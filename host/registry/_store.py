"""The registry: one DuckDB file written by one process (the host).

Tables ``runtime_providers``, ``provider_invocations`` and ``provider_links`` are the seed's, column
for column; ``provider_daemons`` records where each local engine runs.

An invocation row is durable before its caller sees the result it describes: ``record()`` (on the call
path) redacts it (_redaction.py), appends it to the journal (_journal.py: survives SIGKILL of
the host, not a machine crash) and queues it. A writer thread makes its JSON and writes batches of rows
(one multi-row INSERT each), then empties the journal when every row in it is in DuckDB; ``open()``
replays whatever a process that ended left there. The writer never gives a row up: a failed write is
retried with backoff; after a few failures in a row, or once the DuckDB file was deleted or replaced
under the host, the registry is unhealthy (``problem`` says what happened and what to do) until writes
work again. ``keep_days`` prunes ``provider_invocations`` rows older than that at open and then hourly.

The DuckDB file, its .wal, the lock and the journal are readable by their owner only (0600), and a
folder the registry makes for them is 0700.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from google.protobuf.message import Message

from worldrt import telemetry
from worldrt.errors import InvalidArgument
from worldrt.host.registry._journal import Journal, Row, message_of, read_rows
from worldrt.host.registry._json import message_json
from worldrt.host.registry._lock import RegistryError, RegistryLock
from worldrt.host.registry._redaction import (
    DEFAULT_CAP_BYTES,
    Payload,
    Redactor,
    add_sizes,
    decode_sizes,
    scrub,
)
from worldrt.host.registry._schema import SCHEMA, SEED_PROVIDERS
from worldrt.providers import CATALOG, make_private, private_umask

log = logging.getLogger("worldrt.registry")



_COLUMNS = ("invocation_id", "provider_id", "operation", "verse_id", "input_params", "output_result",
            "latency_ms", "cost_units", "invoked_at", "startup_ms", "host_id", "replica")
_INSERT_NEW = (f"INSERT INTO provider_invocations ({', '.join(_COLUMNS)}) SELECT "
               + ", ".join(f"unnest(${i + 1})" for i in range(len(_COLUMNS))))
_INSERT = _INSERT_NEW.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)

RUN_COLUMNS = ("run_id", "verse_id", "preset", "providers", "trits", "gf3_sum", "balanced", "allow_unbalanced",
               "baseline_value", "winner_value", "wev", "cost_units", "duration_ms", "started_at", "status", "result")
_INSERT_RUN = (f"INSERT INTO pipeline_runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' for _ in RUN_COLUMNS)})")
_INGEST_RUN = (f"INSERT OR IGNORE INTO pipeline_runs ({', '.join(RUN_COLUMNS)}, host_id) "
               f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)}, ?)")
# DuckDB errors that say the registry cannot write now (a full disk, a lost file), not that a record is bad.
_STORE_ERRORS = (duckdb.OperationalError, duckdb.FatalException, duckdb.InternalError, duckdb.PermissionException,
                 duckdb.InterruptException)
# What a sink is told: (kind, id, record): "invocations" with a journal record, or "runs" with a run's JSON.
Sink = Callable[[str, str, bytes], None]

# A batch costs DuckDB a few ms of CPU whatever its size: at 0.05 s that was most of what recording a row
# cost at a component's call rate. Rows are durable in the journal at once; readers flush first.
BATCH_INTERVAL_S = 0.25
MAX_BATCH = 5000
# How often the writer looks at its files (and retention) when no row arrives.
TICK_S = 1.0
FAILURES_BEFORE_UNHEALTHY = 3
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 5.0
PRUNE_EVERY_S = 3600.0

_FLUSH = object()
_STOP = object()


class RecordError(InvalidArgument):
    """A record from elsewhere (the lattice's streams) that cannot become a row; the message says why."""


@dataclass(frozen=True)
class Invocation:
    """One provider call. Params and result may be protobuf messages: they become JSON in the writer.

    ``secrets`` are the values of the call's link that no stored string of the row may contain."""

    provider_id: str
    operation: str
    verse_id: str
    input_params: Any
    output_result: Any
    latency_ms: float
    cost_units: float
    invoked_at: float
    secrets: tuple[str, ...] = ()
    startup_ms: float = 0.0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _json(payload: Payload) -> str:
    if payload.kind == b"j":
        return payload.data.decode()
    document = message_json(message_of(payload))
    # MessageToDict (and message_json) make only JSON types: the plain (and cached, fast) encoder will do.
    return json.dumps(add_sizes(document, decode_sizes(payload.sizes)) if payload.sizes else document)


def _columns(rows: Sequence[Row]) -> list[list[Any]]:
    """The INSERT's columns for ``rows``; their JSON is made here, in the writer, not on the call path."""
    return [[r.invocation_id for r in rows], [r.provider_id for r in rows], [r.operation for r in rows],
            [r.verse_id for r in rows], [_json(r.input_params) for r in rows], [_json(r.output_result) for r in rows],
            [r.latency_ms for r in rows], [r.cost_units for r in rows],
            [datetime.fromtimestamp(r.invoked_at, UTC).replace(tzinfo=None) for r in rows],
            [r.startup_ms for r in rows], [r.host_id for r in rows], [r.replica or None for r in rows]]


def _run_values(run: bytes | tuple[bytes, str | None]) -> tuple[str, list[Any]]:
    """A run's id and its INSERT values (RUN_COLUMNS, then host_id) from its JSON; ValueError when it is not one."""
    data, host = run if isinstance(run, tuple) else (run, None)
    values = json.loads(data)
    if not isinstance(values, list) or len(values) != len(RUN_COLUMNS):
        raise ValueError(f"a run is a JSON list of {len(RUN_COLUMNS)} values ({', '.join(RUN_COLUMNS)})")
    if not isinstance(values[0], str) or not values[0]:
        raise ValueError("a run's first value is its run_id, a string")
    values[13] = datetime.fromisoformat(values[13]) if values[13] else None
    return values[0], [*values, host]


def _insert_rows(con: duckdb.DuckDBPyConnection, columns: list[list[Any]]) -> None:
    """One INSERT of the rows in ``columns`` (outside a transaction); a row whose invocation_id is already there
    is skipped. A plain INSERT is tried first: it costs DuckDB a third of INSERT OR IGNORE's (3 ms against 9 for
    ten rows, 103 against 136 ms for 5,000 here), and an id is already there only after a replayed journal or a
    redelivered record, whose INSERT fails whole (ConstraintException) and is made again with OR IGNORE."""
    try:
        con.execute(_INSERT_NEW, columns)
    except duckdb.ConstraintException:
        con.execute(_INSERT, columns)


def _prune(con: duckdb.DuckDBPyConnection, keep_days: float) -> None:
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=keep_days)
    con.execute("DELETE FROM provider_invocations WHERE invoked_at < ?", [cutoff])


class Registry:
    """Open with ``Registry.open(path)``; ``close()`` writes every recorded row (or leaves it in the journal)."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, lock: RegistryLock, journal: Journal,
                 redactor: Redactor, keep_days: float | None, prune_every_s: float) -> None:
        self.path = path
        self._con = con
        self._lock = lock
        self._identity = _identity(path)
        self._db_lock = threading.Lock()
        self._journal = journal
        self._journal_lock = threading.Lock()
        self._journal_broken = False
        # Journal records of the rows not yet in DuckDB, in the order they were recorded.
        self._uncommitted: collections.deque[bytes] = collections.deque()
        self._redactor = redactor
        self._keep_days = keep_days
        self._prune_every_s = prune_every_s
        self._queue: queue.SimpleQueue[Row | object] = queue.SimpleQueue()
        self._urgent = threading.Event()
        telemetry.watch("worldrt_registry_rows_queued", lambda: {(): len(self._uncommitted)})
        # Invocation ids: 64 random bits for this process, then a counter (32 hex digits, as uuid4().hex).
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count()
        self._recorded = 0
        self._committed = 0
        self._problems: dict[str, str] = {}
        self._listeners: list[Callable[[str | None], None]] = []
        # Told each row once it is durable here, before its caller sees the result (the lattice's stream).
        self.sink: Sink | None = None
        self._progress = threading.Condition()
        self._left = 0
        self._writer = threading.Thread(target=self._write_forever, name="registry-writer", daemon=True)
        self._writer.start()

    @classmethod
    def open(cls, path: str | Path, *, keep_days: float | None = None, cap_bytes: int = DEFAULT_CAP_BYTES,
             prune_every_s: float = PRUNE_EVERY_S, lock: RegistryLock | None = None) -> Registry:
        """Open (or make) the registry at ``path``, replay its journal and prune rows past ``keep_days``.
        ``lock``, taken beforehand with ``RegistryLock.take(path)``, becomes the registry's once it is open
        (released when it closes); if it cannot open, the caller still holds it, to release once what it
        started under it has stopped. Without it the registry takes its own."""
        path = Path(path)
        if keep_days is not None and keep_days <= 0:
            raise InvalidArgument(f"keep-days must be more than 0 (got {keep_days}); leave it out to keep every row")
        try:
            redactor = Redactor(cap_bytes)
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        if lock is not None:
            if not lock.held or lock.path.resolve() != path.resolve():
                raise RegistryError(f"the lock given to open {path} is not held or is another file's ({lock.path})")
            return cls._open_locked(path, lock, redactor, keep_days, prune_every_s)
        own = RegistryLock.take(path)
        try:
            return cls._open_locked(path, own, redactor, keep_days, prune_every_s)
        except BaseException:
            own.release()
            raise

    @classmethod
    def _open_locked(cls, path: Path, lock: RegistryLock, redactor: Redactor, keep_days: float | None,
                     prune_every_s: float) -> Registry:
        journal_path = path.with_name(path.name + ".journal")
        try:
            with private_umask():
                con = duckdb.connect(str(path))
        except duckdb.Error as exc:
            raise RegistryError(f"{path} cannot be opened as a DuckDB registry ({_first_line(exc)}); "
                                f"move it away or pass --db") from None
        journal: Journal | None = None
        try:
            with private_umask():
                con.execute(SCHEMA)
                con.execute(SEED_PROVIDERS)
                make_private(path, path.with_name(path.name + ".wal"))
                journal = Journal(journal_path)
                rows = read_rows(journal_path)
                if rows:
                    _insert_rows(con, _columns(list({r.invocation_id: r for r in rows}.values())))
                    log.info("replayed %d invocation row(s) from %s", len(rows), journal_path)
                journal.truncate()
                if keep_days is not None:
                    _prune(con, keep_days)
        except (duckdb.Error, OSError) as exc:
            if journal is not None:
                journal.close()
            con.close()
            raise RegistryError(f"{path} cannot be opened as a DuckDB registry with its journal {journal_path} "
                                f"({_first_line(exc)}); move them away or pass --db") from None
        return cls(path, con, lock, journal, redactor, keep_days, prune_every_s)

    # health --------------------------------------------------------------------------------------
    @property
    def problem(self) -> str | None:
        """Why the registry is unhealthy, in one line (None when it is healthy)."""
        with self._progress:
            return "; ".join(self._problems[k] for k in ("file", "journal", "writes") if k in self._problems) or None

    @property
    def healthy(self) -> bool:
        return self.problem is None

    def watch(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(problem)`` now and whenever the problem changes (None: healthy again)."""
        self._listeners.append(listener)
        listener(self.problem)

    def _set_problem(self, kind: str, text: str | None) -> None:
        with self._progress:
            before = self.problem
            if text is None:
                self._problems.pop(kind, None)
            else:
                self._problems[kind] = text
            after = self.problem
            self._progress.notify_all()
        if after != before:
            if after is None:
                log.info("registry %s is healthy again", self.path)
            elif before is None:
                log.error("registry unhealthy: %s", after)
            for listener in list(self._listeners):
                listener(after)

    # writes --------------------------------------------------------------------------------------
    def record(self, invocation: Invocation) -> None:
        """Make one invocation row durable (the journal) and queue it for DuckDB."""
        self.record_call(invocation.provider_id, invocation.operation, invocation.verse_id, invocation.input_params,
                         invocation.output_result, invocation.latency_ms, invocation.cost_units, invocation.invoked_at,
                         invocation.secrets, invocation.startup_ms)

    def record_call(self, provider_id: str, operation: str, verse_id: str, input_params: Any, output_result: Any,
                    latency_ms: float, cost_units: float, invoked_at: float, secrets: tuple[str, ...] = (),
                    startup_ms: float = 0.0, replica: str = "") -> None:
        """``record(Invocation(...))`` without making the Invocation: the router's call path. ``latency_ms``
        is what the caller waited, ``startup_ms`` (included in it) the part spent starting the provider;
        ``replica`` is the lattice replica that answered ("" for the host's own daemon)."""
        if secrets:
            verse_id = scrub(verse_id, secrets)
        redactor = self._redactor
        row = Row(f"{self._id_prefix}{next(self._ids):016x}", provider_id, operation, verse_id,
                  redactor.payload(input_params, secrets) if isinstance(input_params, Message)
                  else redactor.json_payload(input_params, secrets),
                  redactor.payload(output_result, secrets) if isinstance(output_result, Message)
                  else redactor.json_payload(output_result, secrets),
                  latency_ms, cost_units, invoked_at, startup_ms, None, replica)
        record = row.journal_record()
        with self._journal_lock:
            if not self._journal_broken:
                try:
                    self._journal.append(record)
                except OSError as exc:
                    self._journal_broken = True
                    self._set_problem("journal", f"cannot append to the journal {self._journal.path} "
                                                 f"({exc.strerror or exc}): rows of new calls are held in memory "
                                                 f"only until it works again")
            self._uncommitted.append(record)
            self._recorded += 1
            self._queue.put(row)
        if self.sink is not None:
            self.sink("invocations", row.invocation_id, record)

    def _repair_journal(self, reopen: bool) -> None:
        """Write every row not yet in DuckDB into a journal that lost rows (a failed append, or deleted)."""
        with self._journal_lock:
            try:
                if reopen:
                    self._journal.reopen()
                self._journal.truncate()
                for record in self._uncommitted:
                    self._journal.append(record)
            except OSError as exc:
                self._journal_broken = True
                self._set_problem("journal", f"cannot write the journal {self._journal.path} "
                                             f"({exc.strerror or exc}): {len(self._uncommitted)} row(s) are held "
                                             f"in memory only until it works again")
                return
            self._journal_broken = False
        self._set_problem("journal", None)

    def _check_files(self) -> None:
        """Notice a deleted or replaced DuckDB file or journal (a stat each: cheap)."""
        now = _identity(self.path)
        if now is None:
            self._set_problem("file", (
                f"the registry file {self.path} was deleted while the host ran: invocation rows since then are kept "
                f"in {self._journal.path}; restart the host to write them into a new registry file there"))
        elif now != self._identity:
            self._set_problem("file", (
                f"the registry file {self.path} was replaced while the host ran: invocation rows since then are "
                f"kept in {self._journal.path}; restart the host to write them into the file now at that path"))
        elif "file" in self._problems:
            self._set_problem("file", None)
        if not self._journal.still_at_path():
            if not self._journal_broken:
                log.warning("the journal %s was deleted or replaced: writing it again", self._journal.path)
            self._repair_journal(reopen=True)
        elif self._journal_broken:
            self._repair_journal(reopen=False)

    def _gather(self, pending: list[Row]) -> object | None:
        """Collect rows for one batch interval; return a sentinel (_FLUSH, _STOP) that ended it early.

        The writer sleeps through the interval and then takes what came: a row recorded meanwhile wakes no
        thread (a wake per row cost each routed call a thread switch); only a flush or a close does."""
        deadline = time.monotonic() + BATCH_INTERVAL_S
        while len(pending) < MAX_BATCH:
            self._urgent.wait(max(0.0, deadline - time.monotonic()))
            self._urgent.clear()
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _FLUSH or item is _STOP:
                    return item
                pending.append(item)  # type: ignore[arg-type]
            if time.monotonic() >= deadline:
                return None
        return None

    def _wake(self, sentinel: object) -> None:
        self._queue.put(sentinel)
        self._urgent.set()

    def _write(self, pending: list[Row], failures: int) -> tuple[int, float]:
        """Write the first batch of ``pending``; return the failures in a row and when to try again."""
        if "file" in self._problems:
            return failures, time.monotonic() + TICK_S
        batch = pending[:MAX_BATCH]
        try:
            columns = _columns(batch)
            # One span per batch written (telemetry.NOOP while tracing is off), not one per row.
            with telemetry.span("registry.write", {"worldrt.rows": len(batch)}), self._db_lock, private_umask():
                _insert_rows(self._con, columns)
        except Exception as exc:  # noqa: BLE001 - any failure is retried; the rows stay queued
            failures += 1
            where = "held in memory" if self._journal_broken else f"kept in {self._journal.path}"
            if failures == 1:
                log.warning("writing %d invocation row(s) to %s failed (%s); retrying", len(batch), self.path,
                            _first_line(exc))
            if failures >= FAILURES_BEFORE_UNHEALTHY:
                self._set_problem("writes", (
                    f"writing invocation rows to {self.path} failed {failures} times in a row ({_first_line(exc)}); "
                    f"{len(pending)} row(s) are {where} and written when it works again"))
            return failures, time.monotonic() + min(FIRST_BACKOFF_S * 2 ** (failures - 1), MAX_BACKOFF_S)
        if _identity(self.path) != self._identity:
            self._check_files()  # deleted or replaced during the insert: the batch may be in the old file
            return failures, time.monotonic() + TICK_S
        del pending[:len(batch)]
        with self._journal_lock:
            for _ in batch:
                self._uncommitted.popleft()
            if not self._uncommitted and self._journal.size:
                try:
                    self._journal.truncate()
                except OSError as exc:
                    log.warning("cannot empty the journal %s: %s", self._journal.path, exc.strerror)
        with self._progress:
            self._committed += len(batch)
            self._progress.notify_all()
        if telemetry.metrics_on():
            now = time.time()
            telemetry.inc("worldrt_registry_rows_written_total", "provider_invocations", by=len(batch))
            for row in batch:
                telemetry.observe("worldrt_registry_write_lag_seconds", max(0.0, now - row.invoked_at))
        if failures:
            log.info("writing invocation rows to %s works again", self.path)
        if "writes" in self._problems:
            self._set_problem("writes", None)
        return 0, 0.0

    def _write_forever(self) -> None:
        pending: list[Row] = []
        failures, retry_at = 0, 0.0
        next_prune = time.monotonic() + self._prune_every_s
        stopping = False
        while True:
            timeout = max(0.0, retry_at - time.monotonic()) if pending else TICK_S
            try:
                item: object | None = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                stopping = True
            elif item is not None and item is not _FLUSH:
                pending.append(item)  # type: ignore[arg-type]
                if not failures:
                    stopping = self._gather(pending) is _STOP
            try:
                self._check_files()
                if pending and (stopping or time.monotonic() >= retry_at):
                    failures, retry_at = self._write(pending, failures)
                    while pending and stopping and not failures and "file" not in self._problems:
                        failures, retry_at = self._write(pending, failures)
                if self._keep_days is not None and time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self._prune_every_s
                    with self._db_lock, private_umask():
                        _prune(self._con, self._keep_days)
            except Exception:
                log.exception("registry writer")
            with self._progress:
                self._progress.notify_all()
            if stopping:
                self._left = len(pending)
                return

    def flush(self) -> None:
        """Write every row recorded so far; RegistryError when the registry is unhealthy and cannot."""
        target = self._recorded
        self._wake(_FLUSH)
        with self._progress:
            while self._committed < target:
                if {"file", "writes"} & self._problems.keys():
                    raise RegistryError(self.problem or f"the registry {self.path} cannot write")
                if not self._writer.is_alive():
                    raise RegistryError(f"the registry {self.path} is closed")
                self._progress.wait(0.5)

    @property
    def written(self) -> int:
        return self._committed

    def close(self) -> None:
        """Write every recorded row it can; what it cannot stays in the journal for the next open (logged)."""
        self._wake(_STOP)
        self._writer.join()
        if self._left and self._journal_broken:
            self._repair_journal(reopen=not self._journal.still_at_path())
        with self._db_lock, private_umask():
            try:
                self._con.close()
            except duckdb.Error as exc:
                log.warning("closing %s: %s", self.path, _first_line(exc))
        with self._journal_lock:
            self._journal.close()
        self._lock.release()
        if self._left and self._journal_broken:
            log.error("%d invocation row(s) are lost: neither %s nor its journal %s could be written",
                      self._left, self.path, self._journal.path)
        elif self._left:
            log.warning("%d invocation row(s) could not be written to %s; they are kept in %s and written when "
                        "the registry is next opened", self._left, self.path, self._journal.path)

    # runs and rows from elsewhere (the lattice's streams) -------------------------------------------
    def insert_run(self, values: Sequence[Any]) -> None:
        """One ``pipeline_runs`` row (values in RUN_COLUMNS order), told to the sink too."""
        with self._db_lock, private_umask():
            self._con.execute(_INSERT_RUN, list(values))
        if self.sink is not None:
            document = [v.isoformat() if isinstance(v, datetime) else v for v in values]
            self.sink("runs", str(values[0]), json.dumps(document).encode())

    def ingest(self, rows: Sequence[Row], runs: Sequence[bytes | tuple[bytes, str | None]] = ()) -> None:
        """Write invocation rows and runs other hosts recorded, in one transaction: committed when this returns.
        A run is its JSON (as a sink got it), or (JSON, host id). A row or run whose id is already there is
        skipped: redelivery never doubles one. RecordError when a record cannot be a row (nothing is written;
        write the others without it), RegistryError when the registry cannot write now (try again later)."""
        try:
            unique = list({r.invocation_id: r for r in rows}.values())
            columns = _columns(unique) if unique else None
            documents = dict(_run_values(run) for run in runs)
        except Exception as exc:  # noqa: BLE001 - making a record's values depends on the record alone
            raise RecordError(f"a record cannot be read ({type(exc).__name__}: {_first_line(exc)})") from None
        if "file" in self._problems:
            raise RegistryError(self.problem or f"the registry {self.path} cannot write")
        with self._db_lock, private_umask():
            try:
                try:
                    self._transaction(columns, documents, new=True)
                except duckdb.ConstraintException:  # an id already there (a redelivery), or a bad record:
                    self._transaction(columns, documents, new=False)  # as in _insert_rows
            except duckdb.Error as exc:
                if isinstance(exc, _STORE_ERRORS):
                    raise RegistryError(f"writing to {self.path} failed: {_first_line(exc)}") from None
                raise RecordError(f"DuckDB refused it: {_first_line(exc)}") from None
        with self._progress:
            self._recorded += len(unique)
            self._committed += len(unique)

    def _transaction(self, columns: list[list[Any]] | None, documents: dict[str, list[Any]], *, new: bool) -> None:
        """Rows and runs in one transaction, rolled back on any failure (called with the lock held)."""
        self._con.execute("BEGIN")
        try:
            if columns is not None:
                self._con.execute(_INSERT_NEW if new else _INSERT, columns)
            for values in documents.values():
                self._con.execute(_INGEST_RUN, values)
            self._con.execute("COMMIT")
        except BaseException:
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # no transaction left to roll back
            raise

    # reads and small writes ----------------------------------------------------------------------
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._db_lock, private_umask():
            cur = self._con.execute(sql, list(params))
            names = [d[0] for d in cur.description] if cur.description else []
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._db_lock, private_umask():
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
        """One transaction of updates: an upsert (INSERT ... ON CONFLICT) took 15 ms here."""
        self.set_statuses([(provider_id, status, {"address": address, "pid": pid, "restarts": restarts,
                                                  "last_error": last_error, "capabilities": capabilities})])

    def set_statuses(self, notes: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Several ``set_status`` notes, ``(provider_id, status, its keyword arguments)``, in order and in one
        transaction: a commit costs about 9 ms here, and a command notes its five daemons at once when it
        opens its registry (starting) and when it ends (stopped)."""
        for provider_id, _, _ in notes:
            if provider_id not in CATALOG:
                raise RegistryError(f"unknown provider {provider_id!r}")
        with self._db_lock, private_umask():
            self._con.execute("BEGIN")
            try:
                for provider_id, status, fields in notes:
                    self._update_status(provider_id, status, **fields)
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def _update_status(self, provider_id: str, status: str, *, address: str | None = None, pid: int | None = None,
                       restarts: int | None = None, last_error: str | None = None,
                       capabilities: dict[str, Any] | None = None) -> None:
        if capabilities is None:
            self._con.execute("UPDATE runtime_providers SET status = ? WHERE provider_id = ?", [status, provider_id])
        else:
            self._con.execute("UPDATE runtime_providers SET status = ?, capabilities = ? WHERE provider_id = ?",
                              [status, json.dumps(capabilities), provider_id])
        [(updated,)] = self._con.execute("""
            UPDATE provider_daemons SET address = COALESCE(?, address), pid = COALESCE(?, pid),
                restarts = COALESCE(?, restarts), last_error = ?, updated_at = now()
            WHERE provider_id = ?""", [address, pid, restarts, last_error, provider_id]).fetchall()
        if not updated:
            self._con.execute("""
                INSERT INTO provider_daemons (provider_id, address, pid, backend, restarts, last_error, updated_at)
                VALUES (?, ?, ?, 'local', COALESCE(?, 0), ?, now())""", [provider_id, address, pid, restarts, last_error])

    def put_link(self, link_id: str, source_component: str, target_provider: str, config: dict[str, Any]) -> None:
        with self._db_lock, private_umask():
            self._con.execute("""
                INSERT INTO provider_links (link_id, source_component, target_provider, link_config)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (link_id) DO UPDATE SET source_component = excluded.source_component,
                    target_provider = excluded.target_provider, link_config = excluded.link_config""",
                              [link_id, source_component, target_provider, json.dumps(config, sort_keys=True)])

    def delete_link(self, link_id: str) -> bool:
        with self._db_lock, private_umask():
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
