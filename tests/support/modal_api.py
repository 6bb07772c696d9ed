"""``worldrt api serve modal`` as a real process, and the official modal SDK as its client (in this process,
pointed at the server by its environment, or in a child process running a script as a user would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.api_servers import ApiServerProcess


def _listening(port: int) -> bool:
    """Whether a TCP socket of this network namespace listens on ``port`` (/proc/net/tcp, tcp6)."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        if any(len(row) > 3 and row[1].endswith(suffix) and row[3] == "0A" for row in rows):  # 0A: LISTEN
            return True
    return False


class ModalApiServer(ApiServerProcess):
    """``worldrt api serve modal`` with state in ``home``, for the host at ``host`` (a running one) or an
    embedded one; its token pair is ``token``. Ready when it logged its address and takes connections (its
    gRPC API has no unauthenticated request to ask)."""

    kind = "modal"
    unset = ("MODAL_SERVER_URL",)

    def __init__(self, home: Path, token: tuple[str, str] = ("ak-test", "as-test"), *, host: str | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.token = token
        super().__init__(home, host=host, args=args)

    def credentials(self) -> dict[str, str]:
        return {"MODAL_TOKEN_ID": self.token[0], "MODAL_TOKEN_SECRET": self.token[1]}

    def answers(self) -> bool:
        """Logged its address and listens there. Told from the kernel's socket table, not by connecting: a
        probe's connection would count against ``--max-connections`` until the server has seen it close."""
        return "Modal-compatible API at" in self.log() and _listening(self.port)

    def client_env(self, token: tuple[str, str] | None = None) -> dict[str, str]:
        """What a user's environment holds to run modal code against this server."""
        token_id, token_secret = token or self.token
        return {"MODAL_SERVER_URL": self.url, "MODAL_TOKEN_ID": token_id, "MODAL_TOKEN_SECRET": token_secret,
                "NO_PROXY": "127.0.0.1,localhost", "MODAL_CONFIG_PATH": str(self.home / "no-modal.toml")}

    def run_script(self, source: str, *, token: tuple[str, str] | None = None, timeout: float = 300,
                   env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        """``python -c SOURCE`` with the modal SDK pointed at this server, as a user runs it (``env``: more
        variables, None to unset one)."""
        merged: dict[str, str | None] = {**os.environ, **self.client_env(token), **(env or {})}
        full = {k: v for k, v in merged.items() if v is not None}
        return subprocess.run([sys.executable, "-c", source], env=full, capture_output=True, text=True,
                              timeout=timeout, cwd=self.home)
