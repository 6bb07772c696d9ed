"""The journal file through its memory mapping: rows read back in order across growth, reopen and close."""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import pytest

from worldrt.host.registry import Journal, Row, parse_record, read_rows
from worldrt.host.registry._redaction import Payload

pytestmark = pytest.mark.pure


def _record(ident: str) -> bytes:
    payload = Payload(b"j", b'{"x": "' + b"y" * 300 + b'"}', b"")
    return Row(ident, "morph", "execute", "1", payload, payload, 1.0, 0.0, time.time()).journal_record()


def test_rows_survive_growth_reopen_and_close_and_the_file_keeps_only_them(tmp_path: Path) -> None:
    path = tmp_path / "world.duckdb.journal"
    journal = Journal(path)
    records = [_record(f"r{i}") for i in range(5000)]  # ~3.5 MiB: the mapping grows past its first chunk
    for record in records[:4000]:
        journal.append(record)
    # Another process reading it now (a host killed at this point) sees every row: zeros after them are skipped.
    assert [r.invocation_id for r in read_rows(path)] == [f"r{i}" for i in range(4000)]
    journal.reopen()
    for record in records[4000:]:
        journal.append(record)
    journal.close()
    assert path.stat().st_size == sum(len(r) for r in records)
    assert [r.invocation_id for r in read_rows(path)] == [f"r{i}" for i in range(5000)]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_a_truncated_journal_is_empty_takes_rows_again_and_closes_empty(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append(_record("a"))
    journal.truncate()
    assert read_rows(path) == []  # a host killed now leaves nothing to replay
    journal.append(_record("b"))
    assert [r.invocation_id for r in read_rows(path)] == ["b"]
    journal.truncate()
    journal.close()
    assert path.stat().st_size == 0


def test_a_record_keeps_its_start_up_wait_and_replica_and_older_records_read_without_them() -> None:
    payload = Payload(b"j", b"{}", b"")
    row = Row("r1", "morph", "execute", "1", payload, payload, 2.0, 0.5, 1.0, 1.5, None, "b")
    assert parse_record(row.journal_record()) == row
    # A record of a version before the replica (its body ends after startup_ms), and one before startup_ms.
    body = row.journal_record()[12:]
    for cut, startup in ((len(body) - 4 - len(b"b"), 1.5), (len(body) - 4 - len(b"b") - 8, 0.0)):
        older = body[:cut]
        parsed = parse_record(struct.pack("<4sII", b"WJr1", len(older), zlib.crc32(older)) + older)
        assert parsed is not None and parsed.replica == "" and parsed.startup_ms == startup
        assert parsed.invocation_id == "r1" and parsed.latency_ms == 2.0
