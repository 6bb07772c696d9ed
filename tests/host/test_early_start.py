"""A command that embeds a host starts the providers it will call before it loads the host: the registry's
lock first, the daemons next, then DuckDB, wasmtime and the router while they start."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from tests.support import alive, cli, cmdlines, processes_under, wait_for
from worldrt.host import Host, Session, host_session
from worldrt.host.registry import Registry, RegistryError, RegistryLock
from worldrt.host.routing import Supervisor, SupervisorError
from worldrt.providers import serving
from worldrt.v1 import host_pb

pytestmark = pytest.mark.daemons


def _session(tmp_path: Path, db: Path, start: list[str]) -> Session:
    # No host listens at this address, so the session embeds one.
    return host_session(f"unix:{tmp_path / 'host.sock'}", home=tmp_path, db=db, start=start)


def _serving(marker: Path, provider: str) -> set[int]:
    # cmdlines skips a process that exited meanwhile (a sandbox's short-lived helpers come and go).
    running = cmdlines(alive(processes_under(str(marker))))
    return {pid for pid, cmdline in running.items() if f"serve\0{provider}\0".encode() in cmdline}


def test_the_providers_a_command_names_are_started_before_it_calls_them(tmp_path: Path) -> None:
    with _session(tmp_path, tmp_path / "w.duckdb", ["gensyn", "ritual"]) as host:
        assert isinstance(host, Host)
        supervisor = host.supervisor
        # Both were started while the host loaded, before anything asked for them ...
        for name in ("gensyn", "ritual"):
            child = supervisor.child(name)
            assert child is not None and child.proc is not None and child.proc.poll() is None
        assert supervisor.child("morph") is None
        # ... and are the daemons a call reaches, which the registry (opened after they started) describes.
        assert host.provider_healthy("gensyn") and host.provider_healthy("ritual")
        host.registry.flush()
        rows = {r["provider_id"]: r for r in host.registry.providers()}
        for name in ("gensyn", "ritual"):
            child = supervisor.child(name)
            assert child is not None and child.proc is not None
            assert rows[name]["status"] == "available" and rows[name]["pid"] == child.proc.pid
        pids = {supervisor.child(n).proc.pid for n in ("gensyn", "ritual")}  # type: ignore[union-attr]
    assert not alive(pids)


def test_a_registry_in_use_stops_a_command_before_it_starts_a_provider(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with Host(db, tmp_path) as running:
        assert running.provider_healthy("gensyn")
        child = running.supervisor.child("gensyn")
        assert child is not None and child.proc is not None
        socket = Path(child.address.removeprefix("unix:"))
        before = socket.stat().st_ino
        with pytest.raises(RegistryError, match="in use by"):
            with _session(tmp_path, db, ["gensyn", "ritual"]):
                pass
        # The running host's daemon still owns its socket: no second gensyn was started to take it over.
        assert _serving(tmp_path, "gensyn") == {child.proc.pid}
        assert not _serving(tmp_path, "ritual")
        assert socket.stat().st_ino == before and running.provider_healthy("gensyn")


def test_a_host_that_cannot_open_stops_the_providers_it_started(tmp_path: Path) -> None:
    db = tmp_path / "bad.duckdb"
    db.write_bytes(b"not a DuckDB file, " * 64)
    # Whoever takes the registry's lock first after the failure must find none of its daemons still running
    # (a second command would start its own on their sockets).
    at_release: list[set[int]] = []
    done = threading.Event()

    def take_when_free() -> None:
        lock_file = db.with_name(db.name + ".lock")
        # Only once the command holds it (its pid is written after the flock): never before the command.
        while b"pid" not in (lock_file.read_bytes() if lock_file.exists() else b""):
            if done.wait(0.001):
                return
        daemons: set[int] = set()
        while not done.is_set():
            try:
                lock = RegistryLock.take(db)
            except RegistryError:
                daemons |= _serving(tmp_path, "gensyn") | _serving(tmp_path, "ritual")
                continue
            at_release.append(alive(daemons))
            lock.release()
            return

    taker = threading.Thread(target=take_when_free)
    taker.start()
    with pytest.raises(RegistryError, match="cannot be opened as a DuckDB registry"):
        with _session(tmp_path, db, ["gensyn", "ritual"]):
            pass
    taker.join(30)
    done.set()
    assert at_release == [set()]
    assert not _serving(tmp_path, "gensyn") and not _serving(tmp_path, "ritual")


def test_a_daemon_started_and_never_asked_for_is_watched_and_its_notes_wait_for_the_registry(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, None, health_interval_s=0.1)
    try:
        supervisor.launch(["gensyn", "no-such-provider"])
        child = supervisor.child("gensyn")
        assert child is not None and supervisor.child("no-such-provider") is None
        wait_for(lambda: child.healthy, 60, "the health watch to find the launched daemon SERVING")
        registry = Registry.open(tmp_path / "w.duckdb")
        try:
            supervisor.attach(registry)  # "starting" then "available", noted before the registry opened
            row = next(r for r in registry.providers() if r["provider_id"] == "gensyn")
            assert child.proc is not None
            assert row["status"] == "available" and row["pid"] == child.proc.pid
            assert row["address"] == child.address
        finally:
            supervisor.close()
            registry.close()
    finally:
        supervisor.close()
    assert child.proc is not None and not alive({child.proc.pid})


def _pool_size(state: dict[str, object]) -> int:
    capabilities = state["capabilities"]
    assert isinstance(capabilities, dict)
    return int(next(c["value_json"] for c in capabilities["capabilities"] if c["name"] == "pool_size"))


def test_a_session_asked_for_one_warm_sandbox_gets_it_and_the_others_keep_the_engines_pools(tmp_path: Path) -> None:
    # The verse commands ask for one: a verse run starts one instance of a sandbox provider at most.
    with host_session(f"unix:{tmp_path / 'host.sock'}", home=tmp_path, db=tmp_path / "w.duckdb", start=["modal"],
                      warm=1) as host:
        state = MessageToDict(host.provider_status(host_pb.ProviderStatusRequest(provider_id="modal")),
                              preserving_proto_field_name=True)
        assert _pool_size(state) == 1
    # Another command's embedded host, like worldrt.Client's (no warm given), keeps the engine's default.
    out = cli(tmp_path, "provider", "status", "modal", "--json")
    assert out.returncode == 0, out.stderr
    assert _pool_size(json.loads(out.stdout)) == 4


def test_a_daemon_that_never_says_serving_is_ended_and_the_next_caller_gets_a_fresh_one(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path / "w.duckdb")
    supervisor = Supervisor(tmp_path, registry, health_interval_s=3600)
    try:
        supervisor.start_timeout_s = 1.0
        supervisor.launch(["gensyn"])
        child = supervisor.child("gensyn")
        assert child is not None and child.proc is not None
        hung = child.proc
        os.kill(hung.pid, signal.SIGSTOP)  # alive, and never answers its health check
        with pytest.raises(SupervisorError, match="did not report SERVING within 1 s"):
            supervisor.ensure("gensyn")
        # Ended, so that nothing uses it: the next caller gets a daemon started afresh.
        assert hung.poll() is not None and supervisor.alive("gensyn") is None
        supervisor.start_timeout_s = 60.0
        again = supervisor.ensure("gensyn")
        assert again is child and child.proc is not hung and child.healthy and child.restarts == 1
        assert supervisor.alive("gensyn") is child and serving(child.address, 2.0) is True
    finally:
        supervisor.close()
        registry.close()

