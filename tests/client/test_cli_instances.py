"""`worldrt instance` against a running host: ids one per line or --json, exec passes the run's stdout,
stderr and exit status through, and a failure is one line on stderr with the exit status of its kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import HostProcess, cli

pytestmark = pytest.mark.daemons


def ok(home: Path, *args: str) -> str:
    done = cli(home, "instance", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_instance_is_started_run_in_snapshotted_branched_merged_listed_and_stopped(served: HostProcess) -> None:
    home = served.home
    iid = ok(home, "start", "morph", "--ttl", "600", "--meta", "by=cli").strip()
    started = json.loads(ok(home, "start", "--json", "--memory-mb", "256"))
    assert started["provider"] == "morph" and started["limits"]["memory_mb"] == 256 and started["running"]
    ran = cli(home, "instance", "exec", iid, "import sys\nprint('out')\nprint('err', file=sys.stderr)\nx = 6\nx * 7")
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "out\n42\n", "err\n")
    command = cli(home, "instance", "exec", iid, "--", "sh", "-c", "echo from sh; echo oops >&2; exit 3")
    assert (command.returncode, command.stdout, command.stderr) == (3, "from sh\n", "oops\n")
    exited = cli(home, "instance", "exec", iid, "raise SystemExit(7)")
    assert exited.returncode == 7
    raised = cli(home, "instance", "exec", iid, "1 / 0")
    assert raised.returncode == 1 and "ZeroDivisionError" in raised.stderr
    as_json = cli(home, "instance", "exec", "--json", iid, "x")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["value"] == 6
    snapshot = ok(home, "snapshot", iid).strip()
    branches = ok(home, "branch", snapshot, "-n", "2").split()
    assert len(branches) == 2 and iid not in branches
    assert json.loads(cli(home, "instance", "exec", "--json", branches[1], "x").stdout)["value"] == 6
    survivor = ok(home, "merge", *branches, "--score", f"{branches[0]}=1", "--score", f"{branches[1]}=2").strip()
    assert survivor == branches[1]
    listed = json.loads(ok(home, "ls", "--json"))["instances"]
    by_id = {i["id"]: i for i in listed}
    assert {iid, started["id"], survivor} <= set(by_id) and branches[0] not in by_id
    assert by_id[iid]["metadata"] == {"by": "cli"} and by_id[survivor]["snapshot_id"] == snapshot
    assert iid in ok(home, "ls")
    stopped = json.loads(ok(home, "stop", "--json", iid, started["id"], survivor))
    assert stopped == {"stopped": [iid, started["id"], survivor]}
    assert not {iid, started["id"], survivor} & {i["id"] for i in json.loads(ok(home, "ls", "--json"))["instances"]}


def test_failures_are_one_line_and_exit_with_their_kinds_status(served: HostProcess, tmp_path: Path) -> None:
    for args in (("exec", "i-000000000000", "1"), ("stop", "i-000000000000"), ("snapshot", "i-000000000000"),
                 ("exec", "i-000000000000", "1", "--provider", "modal")):
        failed = cli(served.home, "instance", *args)
        assert failed.returncode == 3 and "no instance 'i-000000000000'" in failed.stderr, failed.stderr
        assert failed.stderr.count("\n") == 1 and failed.stdout == ""
    for args, said in ((("exec", "i-1"), "give the code to run"), (("exec", "i-1", "1", "--", "ls"), "not both"),
                       (("merge", "i-1", "i-2"), "--winner"), (("branch", "s-1", "-n", "0"), "--count")):
        refused = cli(served.home, "instance", *args)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    nobody = cli(tmp_path, "instance", "ls")
    assert nobody.returncode == 69 and "no host answers" in nobody.stderr and "worldrt host serve" in nobody.stderr
    assert not (tmp_path / "world.duckdb").exists()
