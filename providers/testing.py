"""Run a provider daemon as a real child process, for tests and tools: ``with ProviderDaemon("morph") as d``."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc

from worldrt.providers._channel import ClientTls, open_channel
from worldrt.providers._child_daemons import spawn_daemon, wait_serving
from worldrt.providers._exits import terminate
from worldrt.v1 import rpc

__all__ = ["ProviderDaemon", "wait_serving", "pids_of_uid"]


def pids_of_uid(uid: int) -> set[int]:
    """Pids of the processes running as ``uid`` (a sandbox's processes run as a uid of their own)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    out.add(int(entry))
            except OSError:
                pass
    return out


class ProviderDaemon:
    """A ``worldrt provider serve NAME`` process, stopped with SIGTERM on exit.

    It listens on a unix socket unless ``listen`` says otherwise; ``serve_args`` are more options of
    ``provider serve`` (``--tls-cert`` ...) and ``tls`` is what this harness's own channel uses. The token
    reaches the daemon in its environment, never on its command line."""

    def __init__(self, name: str, *, state_dir: Path | None = None, token: str | None = None,
                 options: dict[str, str] | None = None, log_path: Path | None = None, listen: str | None = None,
                 serve_args: tuple[str, ...] = (), tls: ClientTls | None = None) -> None:
        self.name = name
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix=f"worldrt-{name}-")
        self.state_dir = state_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.address = listen or f"unix:{self.state_dir / (name + '.sock')}"
        self.serve_args = serve_args
        self.tls = tls
        self.token = token
        self.options = options or {}
        self.log_path = log_path or self.state_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None

    def start(self) -> Self:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn_daemon(self.name, self.address, self.state_dir, self.log_path, token=self.token,
                                 options=self.options, args=self.serve_args)
        try:
            wait_serving(self.address, proc=self.proc, tls=self.tls, log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        self.channel = open_channel(self.address, tls=self.tls, token=self.token)
        return self

    @property
    def stub(self) -> rpc.WorldRuntimeStub:
        assert self.channel is not None, "start() the daemon first"
        return rpc.WorldRuntimeStub(self.channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the daemon and wait; SIGKILL it if it does not stop in time. Returns its exit code."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is None:
            return None
        code = terminate(self.proc, timeout_s)
        if self._tmp is not None:
            self._tmp.cleanup()
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
