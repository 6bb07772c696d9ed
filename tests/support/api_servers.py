"""What the ``worldrt api serve KIND`` test servers share: a free loopback port, and the server as a real
process (its state in a home folder, its key in its environment, started again on another port when the one
found free was taken first, ready when an authorized request is answered 200, stopped with everything it
started)."""

from __future__ import annotations

import abc
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.processes import processes_under, wait_for, wait_gone


def read_head(sock: socket.socket) -> bytes:
    """What an HTTP server answered on ``sock`` up to the end of its head (or until it closed)."""
    got = b""
    while b"\r\n\r\n" not in got:
        piece = sock.recv(4096)
        if not piece:
            break
        got += piece
    return got


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ApiServerProcess(abc.ABC):
    """``worldrt api serve KIND --listen 127.0.0.1:PORT`` with ``WORLDRT_STATE_DIR=home`` and the server's
    credentials in its environment (``credentials()``), for the host at ``host`` (a running one) or an
    embedded one. Subclasses name the kind, its credentials and how a ready server is told (``answers()``)."""

    kind = ""

    def __init__(self, home: Path, *, host: str | None = None, args: tuple[str, ...] = ()) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        env = self.server_env()
        self.log_path = home / f"{self.kind}-api-{time.monotonic_ns()}.log"
        last = ""
        for _attempt in range(3):  # a port found free can be taken before the server binds it
            self.port = free_port()
            self.url = self.url_of(self.port)
            command = [sys.executable, "-m", "worldrt.host.cli", "api", "serve", self.kind,
                       "--listen", f"127.0.0.1:{self.port}", *(("--host", host) if host else ()), *args]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)
            try:
                up = wait_for(self._up_or_dead, 60, f"the {self.kind} API on port {self.port} answers") == "up"
            except BaseException:
                self.stop()  # alive but never answering: it and what it started go, not left to run on
                raise
            if up:
                return
            self.stop()
            last = self.log_path.read_text(errors="replace")
            if "address already in use" not in last.lower():
                break
        raise AssertionError(f"worldrt api serve {self.kind} did not start:\n{last[-3000:]}")

    unset: tuple[str, ...] = ()  # variables of this process the server must not inherit

    @staticmethod
    def url_of(port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def server_env(self) -> dict[str, str]:
        """The server's environment: this process's, with its state folder and credentials."""
        env = {**os.environ, "WORLDRT_STATE_DIR": str(self.home), **self.credentials()}
        for name in ("WORLDRT_TOKEN", "WORLDRT_DB", *self.unset):
            env.pop(name, None)
        return env

    @abc.abstractmethod
    def credentials(self) -> dict[str, str]:
        """The variables that hold the credentials the server requires."""

    @abc.abstractmethod
    def answers(self) -> bool:
        """Whether the server (running) answers an authorized request."""

    def _up_or_dead(self) -> str | None:
        if self.proc.poll() is not None:
            return "dead"
        return "up" if self.answers() else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, and wait for it and everything it started (an embedded host's providers) to be gone."""
        tree = processes_under(f"--listen 127.0.0.1:{self.port}")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        wait_gone(tree)
        return code


class HttpApiServerProcess(ApiServerProcess):
    """An API server over HTTP whose credential is one key (``KEY_VAR=key``): ready when ``ready_path``
    (under ``url_of(port)``) answers 200 to a request with ``ready_headers()``."""

    key_var = ""
    ready_path = ""

    def __init__(self, home: Path, key: str, *, host: str | None = None, args: tuple[str, ...] = ()) -> None:
        self.key = key
        super().__init__(home, host=host, args=args)

    def credentials(self) -> dict[str, str]:
        return {self.key_var: self.key}

    @abc.abstractmethod
    def ready_headers(self) -> dict[str, str]:
        """The headers of an authorized readiness request."""

    def answers(self) -> bool:
        try:
            answer = httpx.get(f"{self.url}{self.ready_path}", headers=self.ready_headers(), timeout=2)
        except httpx.TransportError:
            return False
        return answer.status_code == 200
