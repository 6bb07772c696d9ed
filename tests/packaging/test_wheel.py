"""The built wheel is the product: installed into a fresh venv outside the repository, it runs the main
job from any folder and gets the same WEV as the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support import ROOT, cli

pytestmark = pytest.mark.daemons


def _pipeline(worldrt: list[str], cwd: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDRT_") or k == "WORLDRT_CACHE"}
    env["WORLDRT_STATE_DIR"] = str(cwd / ".worldrt")
    proc = subprocess.run([*worldrt, "verse", "pipeline", "1069", "--json"], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run: dict[str, object] = json.loads(proc.stdout)
    return run


# It builds a wheel, installs it with every dependency and runs the pipeline twice: minutes on a loaded machine.
@pytest.mark.timeout(300)
def test_the_installed_wheel_runs_the_pipeline_with_the_checkouts_wev(tmp_path: Path) -> None:
    dist, source = tmp_path / "dist", tmp_path / "source"
    # Built from a copy of the tracked files, so the build leaves nothing in the checkout.
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("world_runtime-*.whl"))
    # Under /tmp, which each sandbox member replaces with its own: the venv is seen at a path of its own.
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)  # this pip installs into it (--python): no copy of pip needed there
    # Its dependencies as a user gets them (from pip's cache once the checkout's venv has been set up).
    # --no-compile: the .pyc files pip would write change nothing here and cost most of the install's time.
    subprocess.run([sys.executable, "-m", "pip", "--python", fresh / "bin" / "python", "install", "-q", "--no-compile",
                    "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    where = subprocess.run([fresh / "bin" / "python", "-c", "import worldrt.host, worldrt.examples as e; "
                            "print(worldrt.host.__file__, e.EXAMPLES_DIR)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout.split()
    assert all(str(fresh) in path and str(ROOT) not in path for path in where), where

    elsewhere = tmp_path / "anywhere"
    elsewhere.mkdir()
    installed = _pipeline([str(fresh / "bin" / "worldrt")], elsewhere)
    checkout_home = tmp_path / "checkout"
    checkout_home.mkdir()
    checkout = cli(checkout_home, "verse", "pipeline", "1069", "--json", timeout=300)
    assert checkout.returncode == 0, checkout.stderr[-3000:]
    assert installed["wev"] == json.loads(checkout.stdout)["wev"] and installed["balanced"] is True
