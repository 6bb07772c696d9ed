"""A host embedded in a command starts the providers the command will call before it loads the rest of
itself: their start-up (an interpreter each, their warm sandboxes) runs beside its own (DuckDB, wasmtime,
the router), not after it. The registry's lock comes first, so a second command on a registry in use stops
before it starts a daemon on the sockets of the host that holds it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from worldrt.host.registry import RegistryLock
from worldrt.host.routing import Supervisor
from worldrt.providers import private_dir


def host_home(home: Path) -> Path:
    """The state directory a host keeps, made private (0700) if it is new."""
    return private_dir(home).resolve()


@dataclass
class EarlyStart:
    """The registry's lock and a supervisor whose daemons are starting: ``Host(..., early=...)`` takes both
    over; ``close`` stops and releases them when no host does."""

    lock: RegistryLock
    supervisor: Supervisor

    @classmethod
    def begin(cls, db: Path, home: Path, providers: Sequence[str], *,
              engine_options: Mapping[str, Mapping[str, str]] | None = None) -> EarlyStart:
        lock = RegistryLock.take(db)
        try:
            supervisor = Supervisor(host_home(home), None, engine_options=engine_options)
        except BaseException:
            lock.release()
            raise
        early = cls(lock, supervisor)
        try:
            supervisor.launch(providers)
        except BaseException:
            early.close()
            raise
        return early

    def close(self) -> None:
        self.supervisor.close()
        self.lock.release()
