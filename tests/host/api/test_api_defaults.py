"""``worldrt api serve e2b|modal`` without ``--listen`` serve on their documented default ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import wait_for
from tests.support.processes import processes_under, wait_gone

pytestmark = pytest.mark.daemons


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(("kind", "port", "keys"), [
    ("e2b", 8791, {"E2B_API_KEY": "default-port-key"}),
    ("modal", 8790, {"MODAL_TOKEN_ID": "ak-default", "MODAL_TOKEN_SECRET": "as-default"}),
])
def test_the_server_listens_on_its_default_port(kind: str, port: int, keys: dict[str, str], tmp_path: Path) -> None:
    assert not _listening(port), f"something already listens on {port}"
    env = {**os.environ, "WORLDRT_STATE_DIR": str(tmp_path), **keys}
    env.pop("WORLDRT_TOKEN", None)
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "api", "serve", kind], cwd=tmp_path,
                                env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is not None or _listening(port), 60, f"api serve {kind} on port {port}")
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        if kind == "e2b":
            answer = httpx.get(f"http://127.0.0.1:{port}/v2/sandboxes", headers={"X-API-KEY": keys["E2B_API_KEY"]},
                               timeout=30)
            assert answer.status_code == 200 and answer.json() == [], answer.text
    finally:
        tree = processes_under(str(tmp_path)) | {proc.pid}
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        wait_gone(tree)


def test_the_modal_server_refuses_to_listen_off_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "WORLDRT_STATE_DIR": str(tmp_path), "MODAL_TOKEN_ID": "ak-x", "MODAL_TOKEN_SECRET": "as-x"}
    wide = subprocess.run([sys.executable, "-m", "worldrt.host.cli", "api", "serve", "modal", "--listen",
                           "0.0.0.0:8790"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert wide.returncode == 2, wide.stderr
    assert "refusing to serve the Modal API on 0.0.0.0:8790" in wide.stderr and "loopback" in wide.stderr
