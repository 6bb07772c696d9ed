"""``worldrt api serve e2b`` as a real process; the official e2b SDKs reach it through the three variables
a user sets (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.morph_api import free_port
from tests.support.processes import processes_under, wait_for, wait_gone


class E2bApiServer:
    """``worldrt api serve e2b`` with state in ``home``, for the host at ``host`` (a running one) or an
    embedded one; ``key`` is the API key it requires (its E2B_API_KEY)."""

    def __init__(self, home: Path, key: str = "e2b-test-key", *, host: str | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.home, self.key = home, key
        home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "WORLDRT_STATE_DIR": str(home), "E2B_API_KEY": key}
        env.pop("WORLDRT_TOKEN", None)
        env.pop("WORLDRT_DB", None)
        self.log_path = home / f"e2b-api-{time.monotonic_ns()}.log"
        last = ""
        for _attempt in range(3):  # a port found free can be taken before the server binds it
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            command = [sys.executable, "-m", "worldrt.host.cli", "api", "serve", "e2b",
                       "--listen", f"127.0.0.1:{self.port}", *(("--host", host) if host else ()), *args]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)
            if wait_for(self._up_or_dead, 60, f"the E2B API on port {self.port} answers") == "up":
                return
            last = self.log_path.read_text(errors="replace")
            if "address already in use" not in last.lower():
                break
        raise AssertionError(f"worldrt api serve e2b did not start:\n{last[-3000:]}")

    def _up_or_dead(self) -> str | None:
        if self.proc.poll() is not None:
            return "dead"
        try:
            answer = httpx.get(f"{self.url}/v2/sandboxes", headers={"X-API-KEY": self.key}, timeout=2)
        except httpx.TransportError:
            return None
        return "up" if answer.status_code == 200 else None

    @contextmanager
    def environment(self, key: str | None = None) -> Iterator[None]:
        """The three variables a user sets, for the SDK calls made inside."""
        wanted = {"E2B_API_URL": self.url, "E2B_SANDBOX_URL": self.url, "E2B_API_KEY": key or self.key}
        saved = {name: os.environ.get(name) for name in wanted}
        os.environ.update(wanted)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

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
