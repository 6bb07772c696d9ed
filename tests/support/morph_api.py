"""``worldrt api serve morph`` as a real process, and the official morphcloud SDK as its client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import processes_under, wait_for, wait_gone

# One transport instead of the SDK's 32: a client is made in 0.2 s instead of about 5 s.
os.environ.setdefault("MORPH_HTTP_TRANSPORT_SHARDS", "1")
# No SSH server answers here: a call that needs one fails after 1 s, not 300 s.
os.environ.setdefault("MORPH_SSH_TOTAL_TIMEOUT_SECS", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MorphApiServer:
    """``worldrt api serve morph`` with state in ``home``, for the host at ``host`` (a running one) or an
    embedded one (``host=None`` and no host in ``home``); ``key`` is the API key it requires."""

    def __init__(self, home: Path, key: str = "test-key", *, host: str | None = None, args: tuple[str, ...] = ()) -> None:
        self.home, self.key = home, key
        home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "WORLDRT_STATE_DIR": str(home), "MORPH_API_KEY": key}
        env.pop("WORLDRT_TOKEN", None)
        env.pop("WORLDRT_DB", None)
        self.log_path = home / f"morph-api-{time.monotonic_ns()}.log"
        last = ""
        for _attempt in range(3):  # a port found free can be taken before the server binds it
            self.port = free_port()
            self.base_url = f"http://127.0.0.1:{self.port}/api"
            command = [sys.executable, "-m", "worldrt.host.cli", "api", "serve", "morph",
                       "--listen", f"127.0.0.1:{self.port}", *(("--host", host) if host else ()), *args]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)
            if wait_for(self._up_or_dead, 60, f"the Morph API on port {self.port} answers") == "up":
                return
            last = self.log_path.read_text(errors="replace")
            if "address already in use" not in last.lower():
                break
        raise AssertionError(f"worldrt api serve morph did not start:\n{last[-3000:]}")

    def _up_or_dead(self) -> str | None:
        if self.proc.poll() is not None:
            return "dead"
        try:
            answer = httpx.get(f"{self.base_url}/image", headers={"Authorization": f"Bearer {self.key}"}, timeout=2)
        except httpx.TransportError:
            return None
        return "up" if answer.status_code == 200 else None

    def client(self, key: str | None = None) -> Any:
        from morphcloud.api import MorphCloudClient

        return MorphCloudClient(api_key=key or self.key, base_url=self.base_url)

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
