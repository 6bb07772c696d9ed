"""The README's "From Python": its first ```python block runs exactly as written, in a fresh interpreter with
no host running (so it embeds one), prints what its comments say, and leaves no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import no_process_left
from tests.support import ROOT

pytestmark = pytest.mark.daemons


def first_python_block() -> str:
    """The first ```python block of README.md, as written there."""
    found = re.search(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    assert found, "README.md has no ```python block"
    return found.group(1)


def test_the_readme_s_first_python_block_runs_as_written(tmp_path: Path) -> None:
    code = first_python_block()
    assert "## From Python" in (ROOT / "README.md").read_text().split(code)[0], "the block is the From Python one"
    for step in ("Client.connect", ".start(", ".exec(", ".snapshot()", ".branch(3)", ".stop()"):
        assert step in code
    env = {k: v for k, v in os.environ.items() if k not in ("WORLDRT_HOST", "WORLDRT_TOKEN", "WORLDRT_DB")}
    env["WORLDRT_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "42" and len(lines) == 4, done.stdout
    branches = [line.split() for line in lines[1:]]
    assert [b[1] for b in branches] == ["7", "8", "9"] and len({b[0] for b in branches}) == 3
    no_process_left(tmp_path)
