"""A command and a daemon that are done leave without the interpreter's tear-down (``exit_now``), and still
leave what any exit leaves: the command's output and status, the daemon's last log line, and a profiler's
profile when one runs it."""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import EXAMPLES
from worldrt.providers.testing import ProviderDaemon

pytestmark = pytest.mark.daemons


def _worldrt(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORLDRT_STATE_DIR": str(home)}
    return subprocess.run([*args], cwd=home, env=env, text=True, capture_output=True, timeout=120)


def test_a_command_leaves_its_answer_and_status(tmp_path: Path) -> None:
    worldrt = Path(sys.executable).with_name("worldrt")
    out = _worldrt(tmp_path, str(worldrt), "component", "inspect", str(EXAMPLES / "tiny.wat"), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["problem"] is None, out.stderr
    missing = _worldrt(tmp_path, str(worldrt), "component", "inspect", str(tmp_path / "none.wasm"))
    assert missing.returncode == 2 and missing.stderr.startswith("worldrt: cannot read "), missing.stderr


def test_a_profiled_command_still_writes_its_profile(tmp_path: Path) -> None:
    profile = tmp_path / "cli.prof"
    out = _worldrt(tmp_path, sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "worldrt.host.cli",
                   "component", "inspect", str(EXAMPLES / "tiny.wat"), "--json")
    assert out.returncode == 0, out.stderr
    assert pstats.Stats(str(profile)).total_calls > 0


def test_a_daemon_stopped_by_sigterm_flushes_its_log_and_exits_0(tmp_path: Path) -> None:
    daemon = ProviderDaemon("gensyn", state_dir=tmp_path)
    with daemon:
        pass
    assert daemon.proc is not None and daemon.proc.returncode == 0
    assert daemon.log_path.read_text().rstrip().endswith("gensyn stopping: 0 instance(s) stopped")
