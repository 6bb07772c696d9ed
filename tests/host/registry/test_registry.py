"""The DuckDB registry: the seed's tables exactly, its rows, batched invocation rows, one writer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from worldrt.host.registry import Invocation, Registry, RegistryError, RegistryLock
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons

SEED_COLUMNS = {
    "runtime_providers": [
        ("provider_id", "VARCHAR", "NO", None), ("name", "VARCHAR", "NO", None), ("trit", "INTEGER", "YES", None),
        ("capabilities", "JSON", "YES", None), ("api_endpoint", "VARCHAR", "YES", None),
        ("auth_method", "VARCHAR", "YES", None), ("status", "VARCHAR", "YES", "'available'"),
        ("registered_at", "TIMESTAMP", "YES", "CURRENT_TIMESTAMP"),
    ],
    "provider_invocations": [
        ("invocation_id", "VARCHAR", "NO", None), ("provider_id", "VARCHAR", "YES", None),
        ("operation", "VARCHAR", "YES", None), ("verse_id", "VARCHAR", "YES", None),
        ("input_params", "JSON", "YES", None), ("output_result", "JSON", "YES", None),
        ("latency_ms", "FLOAT", "YES", None), ("cost_units", "FLOAT", "YES", None),
        ("invoked_at", "TIMESTAMP", "YES", "CURRENT_TIMESTAMP"),
        # Added after the seed: of latency_ms, the time spent starting the provider; the lattice host that wrote
        # it; the lattice replica that answered.
        ("startup_ms", "FLOAT", "YES", "0"), ("host_id", "VARCHAR", "YES", None), ("replica", "VARCHAR", "YES", None),
    ],
    "provider_links": [
        ("link_id", "VARCHAR", "NO", None), ("source_component", "VARCHAR", "YES", None),
        ("target_provider", "VARCHAR", "YES", None), ("link_config", "JSON", "YES", None),
        ("created_at", "TIMESTAMP", "YES", "CURRENT_TIMESTAMP"),
    ],
}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str, str, str | None]]:
    rows = con.execute("SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
                       "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
    return [(n, t, nullable, d if d is None else str(d).upper().replace("NOW()", "CURRENT_TIMESTAMP")) for
            n, t, nullable, d in rows]


def test_the_seed_tables_exactly(tmp_path: Path) -> None:
    Registry.open(tmp_path / "w.duckdb").close()
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    for table, expected in SEED_COLUMNS.items():
        got = _columns(con, table)
        assert [(n, t, nl) for n, t, nl, _ in got] == [(n, t, nl) for n, t, nl, _ in expected]
        for (name, _, _, default), (_, _, _, want) in zip(got, expected):
            assert (default is None) == (want is None), name
            if want is not None:
                assert want.strip("'").upper() in default.upper(), (name, default)
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO runtime_providers (provider_id, name, trit) VALUES ('x', 'x', 2)")
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO provider_links (link_id, target_provider) VALUES ('l', 'nobody')")
    rows = dict(con.execute("SELECT provider_id, trit FROM runtime_providers").fetchall())
    assert rows == {"morph": 1, "primeintellect": 0, "gensyn": -1, "modal": 1, "ritual": -1}
    morph = con.execute("SELECT name, api_endpoint, auth_method, capabilities FROM runtime_providers "
                        "WHERE provider_id = 'morph'").fetchone()
    assert morph[:3] == ("Morph Labs Infinibranch", "https://api.cloud.morph.so/v1", "bearer")
    assert json.loads(morph[3])["languages"] == ["python", "js", "rust", "cpp"]
    con.close()


def test_reopening_keeps_rows_and_does_not_duplicate_seeds(tmp_path: Path) -> None:
    with_rows = Registry.open(tmp_path / "w.duckdb")
    with_rows.record(Invocation("morph", "execute", "7", pb.ExecuteRequest(code="1"), {"v": 1}, 1.5, 0.01, time.time()))
    with_rows.close()
    again = Registry.open(tmp_path / "w.duckdb")
    assert len(again.providers()) == 5
    row = again.recent_invocations(5)[0]
    assert (row["provider_id"], row["operation"], row["verse_id"]) == ("morph", "execute", "7")
    assert json.loads(row["input_params"]) == {"code": "1"} and row["latency_ms"] == pytest.approx(1.5)
    again.close()


def test_a_second_writer_gets_one_clear_line(tmp_path: Path) -> None:
    first = Registry.open(tmp_path / "w.duckdb")
    try:
        with pytest.raises(RegistryError) as info:
            Registry.open(tmp_path / "w.duckdb")
        message = str(info.value)
        assert "\n" not in message and "in use by pid" in message and str(tmp_path) in message
    finally:
        first.close()


def test_a_lock_taken_beforehand_becomes_the_registrys(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    lock = RegistryLock.take(path)
    with pytest.raises(RegistryError, match="in use by pid"):
        RegistryLock.take(path)  # held from the moment it is taken, before DuckDB opens the file
    registry = Registry.open(path, lock=lock)
    with pytest.raises(RegistryError, match="in use by pid"):
        Registry.open(path)
    registry.close()
    assert not lock.held
    Registry.open(path).close()  # free once the registry that held it closed


def test_a_lock_not_held_or_of_another_file_is_refused_and_a_failed_open_leaves_the_lock_to_its_taker(
        tmp_path: Path) -> None:
    released = RegistryLock.take(tmp_path / "w.duckdb")
    released.release()
    with pytest.raises(RegistryError, match="not held"):
        Registry.open(tmp_path / "w.duckdb", lock=released)
    other = RegistryLock.take(tmp_path / "other.duckdb")
    with pytest.raises(RegistryError, match="another file"):
        Registry.open(tmp_path / "w.duckdb", lock=other)
    other.release()
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a DuckDB file, " * 64)
    lock = RegistryLock.take(bad)
    with pytest.raises(RegistryError, match="cannot be opened"):
        Registry.open(bad, lock=lock)
    # Still held: its taker releases it once what it started under it has stopped.
    assert lock.held
    with pytest.raises(RegistryError, match="in use by pid"):
        RegistryLock.take(bad)
    lock.release()
    RegistryLock.take(bad).release()
    with pytest.raises(RegistryError, match="cannot be opened"):
        Registry.open(bad)  # a lock the registry took itself is let go when it cannot open
    RegistryLock.take(bad).release()


def test_a_corrupt_file_is_refused_with_a_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a database" * 1000)
    with pytest.raises(RegistryError) as info:
        Registry.open(bad)
    assert "\n" not in str(info.value) and "move it away" in str(info.value)
    assert bad.read_bytes().startswith(b"not a database"), "the file must not be touched"


_WRITER = textwrap.dedent("""
    import sys, time, os
    from worldrt.host.registry._store import Registry, Invocation
    reg = Registry.open(sys.argv[1])
    n = int(sys.argv[2])
    try:
        for i in range(n):
            reg.record(Invocation("morph", "execute", str(i), {"i": i}, {}, 0.1, 0.0, time.time()))
        print("queued", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        pass
    finally:
        reg.close()
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_no_row_is_lost_when_the_writer_is_stopped(tmp_path: Path, signum: int) -> None:
    db = tmp_path / "w.duckdb"
    # SIGINT too: a child of a pytest-xdist worker inherits SIGINT ignored.
    script = ("import signal\nsignal.signal(signal.SIGTERM, signal.default_int_handler)\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n" + _WRITER)
    proc = subprocess.Popen([sys.executable, "-c", script, str(db), "30000"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "queued"
    proc.send_signal(signum)
    assert proc.wait(30) == 0
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT verse_id) FROM provider_invocations").fetchone() == (
        30000, 30000)
    con.close()


def test_statuses_noted_together_are_written_in_order_or_not_at_all(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path / "w.duckdb")
    try:
        registry.set_statuses([("gensyn", "starting", {"address": "unix:/g.sock"}),
                               ("ritual", "starting", {"address": "unix:/r.sock"}),
                               ("gensyn", "available", {"address": "unix:/g.sock", "pid": 41, "restarts": 0})])
        rows = {r["provider_id"]: r for r in registry.providers()}
        assert (rows["gensyn"]["status"], rows["gensyn"]["pid"], rows["gensyn"]["address"]) == ("available", 41,
                                                                                             "unix:/g.sock")
        assert (rows["ritual"]["status"], rows["ritual"]["address"]) == ("starting", "unix:/r.sock")
        with pytest.raises(RegistryError, match="unknown provider 'nobody'"):
            registry.set_statuses([("gensyn", "stopped", {}), ("nobody", "stopped", {})])
        with pytest.raises(TypeError):
            registry.set_statuses([("ritual", "stopped", {}), ("gensyn", "stopped", {"colour": "red"})])
        rows = {r["provider_id"]: r for r in registry.providers()}
        assert rows["gensyn"]["status"] == "available" and rows["ritual"]["status"] == "starting"
    finally:
        registry.close()
