"""``worldrt api serve modal`` as a real process, and the official modal SDK as its client (in this process,
pointed at the server by its environment, or in a child process running a script as a user would)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.morph_api import free_port
from tests.support.processes import processes_under, wait_for, wait_gone


class ModalApiServer:
    """``worldrt api serve modal`` with state in ``home``, for the host at ``host`` (a running one) or an
    embedded one; its token pair is ``token``."""

    def __init__(self, home: Path, token: tuple[str, str] = ("ak-test", "as-test"), *, host: str | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.home, self.token = home, token
        home.mkdir(parents=True, exist_ok=True)
        self.log_path = home / f"modal-api-{time.monotonic_ns()}.log"
        last = ""
        for _attempt in range(3):  # a port found free can be taken before the server binds it
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            command = [sys.executable, "-m", "worldrt.host.cli", "api", "serve", "modal",
                       "--listen", f"127.0.0.1:{self.port}", *(("--host", host) if host else ()), *args]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(command, cwd=home, env=self.server_env(), stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)
            if wait_for(self._up_or_dead, 60, f"the Modal API on port {self.port} answers") == "up":
                return
            last = self.log_path.read_text(errors="replace")
            if "address already in use" not in last.lower():
                break
        raise AssertionError(f"worldrt api serve modal did not start:\n{last[-3000:]}")

    def server_env(self) -> dict[str, str]:
        env = {**os.environ, "WORLDRT_STATE_DIR": str(self.home), "MODAL_TOKEN_ID": self.token[0],
               "MODAL_TOKEN_SECRET": self.token[1]}
        for name in ("WORLDRT_TOKEN", "WORLDRT_DB", "MODAL_SERVER_URL"):
            env.pop(name, None)
        return env

    def client_env(self, token: tuple[str, str] | None = None) -> dict[str, str]:
        """What a user's environment holds to run modal code against this server."""
        token_id, token_secret = token or self.token
        return {"MODAL_SERVER_URL": self.url, "MODAL_TOKEN_ID": token_id, "MODAL_TOKEN_SECRET": token_secret,
                "NO_PROXY": "127.0.0.1,localhost", "MODAL_CONFIG_PATH": str(self.home / "no-modal.toml")}

    def _up_or_dead(self) -> str | None:
        if self.proc.poll() is not None:
            return "dead"
        if "Modal-compatible API at" not in self.log():
            return None
        with socket.socket() as s:
            return "up" if s.connect_ex(("127.0.0.1", self.port)) == 0 else None

    def run_script(self, source: str, *, token: tuple[str, str] | None = None, timeout: float = 300,
                   env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        """``python -c SOURCE`` with the modal SDK pointed at this server, as a user runs it (``env``: more
        variables, None to unset one)."""
        merged: dict[str, str | None] = {**os.environ, **self.client_env(token), **(env or {})}
        full = {k: v for k, v in merged.items() if v is not None}
        return subprocess.run([sys.executable, "-c", source], env=full, capture_output=True, text=True,
                              timeout=timeout, cwd=self.home)

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
