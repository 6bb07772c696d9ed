"""`worldrt process` and `worldrt instance exec -i` against a running host: ids and offsets printed (or
--json), output passed through as bytes, the process's exit status passed through by `wait` and `exec -i`,
piped stdin reaching the process; failures one line on stderr and the exit status of their kind."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import HostProcess, cli

pytestmark = pytest.mark.daemons


def ok(home: Path, *args: str) -> str:
    done = cli(home, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def piped(home: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``worldrt ARGS`` with ``data`` on its stdin, its output as bytes."""
    env = {**os.environ, "WORLDRT_STATE_DIR": str(home)}
    env.pop("WORLDRT_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], cwd=home, env=env, input=data,
                          capture_output=True, timeout=120)


@pytest.fixture()
def iid(served: HostProcess) -> str:
    return ok(served.home, "instance", "start").strip()


def test_a_process_is_started_written_read_waited_for_listed_and_killed(served: HostProcess, iid: str) -> None:
    home = served.home
    pid = ok(home, "process", "start", iid, "--stdin", "--tag", "cli", "--env", "WHO=cli", "--",
             "sh", "-c", "echo $WHO; cat; echo done >&2; exit 4").strip()
    assert ok(home, "process", "write", iid, pid, "abc\n").strip() == "4"
    assert ok(home, "process", "write", iid, pid, "abc\n", "--offset", "0").strip() == "4"  # a retry: not twice
    fed = piped(home, b"\x00\xffbin\n", "process", "write", iid, pid, "-", "--eof", "--json")
    assert fed.returncode == 0, fed.stderr
    assert json.loads(fed.stdout) == {"offset": 10, "written": 6, "closed": True}
    waited = cli(home, "process", "wait", iid, pid, "--timeout", "30")
    assert (waited.returncode, waited.stdout) == (4, "exited 4\n")
    logs = piped(home, b"", "process", "logs", iid, pid, "--follow")
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, b"cli\nabc\n\x00\xffbin\n", b"done\n")
    lines = [json.loads(line) for line in ok(home, "process", "logs", iid, pid, "--json", "--stream", "stdout",
                                             "--offset", "4").splitlines()]
    assert b"".join(base64.b64decode(c["data"]) for c in lines) == b"abc\n\x00\xffbin\n"
    assert lines[0]["offset"] == 4 and {c["stream"] for c in lines} == {"stdout"}
    started = json.loads(ok(home, "process", "start", iid, "--json", "--timeout", "60", "--", "sleep", "60"))
    assert started["state"] == "running" and started["argv"] == ["sleep", "60"]
    still = cli(home, "process", "wait", iid, started["id"], "--timeout", "0.3", "--json")
    assert still.returncode == 1 and json.loads(still.stdout)["state"] == "running"
    listed = json.loads(ok(home, "process", "ls", iid, "--json"))["processes"]
    assert [p["id"] for p in listed] == [pid, started["id"]] and listed[0]["tag"] == "cli"
    assert pid in ok(home, "process", "ls", iid)
    ok(home, "process", "kill", iid, started["id"], "--signal", "TERM")
    assert cli(home, "process", "wait", iid, started["id"], "--timeout", "30").returncode == 128 + 15
    ok(home, "instance", "stop", iid)


def test_instance_exec_i_pipes_stdin_to_the_command_and_passes_its_status_through(served: HostProcess,
                                                                                   iid: str) -> None:
    data = b"line one\n" + bytes(range(256)) + b"x" * 300_000
    ran = piped(served.home, data, "instance", "exec", "-i", iid, "--", "sh", "-c", "cat; echo bye >&2; exit 5")
    assert (ran.returncode, ran.stdout, ran.stderr) == (5, data, b"bye\n")
    counted = piped(served.home, b"a\nb\nc\n", "instance", "exec", "-i", iid, "--env", "N=x", "--",
                    "sh", "-c", "wc -l; echo $N")
    assert (counted.returncode, counted.stdout) == (0, b"3\nx\n")
    # A command that does not read its stdin ends all the same.
    deaf = piped(served.home, b"unread\n" * 1000, "instance", "exec", "-i", iid, "--", "true")
    assert deaf.returncode == 0, deaf.stderr
    ok(served.home, "instance", "stop", iid)


def test_process_failures_are_one_line_and_exit_with_their_kinds_status(served: HostProcess, iid: str) -> None:
    home = served.home
    for args in (("wait", iid, "p-000000000000"), ("logs", iid, "p-000000000000"), ("kill", iid, "p-000000000000"),
                 ("write", iid, "p-000000000000", "x")):
        failed = cli(home, "process", *args)
        assert failed.returncode == 3 and "no process 'p-000000000000'" in failed.stderr, failed.stderr
        assert failed.stderr.count("\n") == 1 and failed.stdout == ""
    flood = ok(home, "process", "start", iid, "--", "sh", "-c", "head -c 18000000 /dev/zero").strip()
    assert cli(home, "process", "wait", iid, flood, "--timeout", "60").returncode == 0
    dropped = cli(home, "process", "logs", iid, flood, "--stream", "stdout")
    assert dropped.returncode == 6 and "is no longer kept: the first kept offset is" in dropped.stderr, dropped.stderr
    for args, said in ((("start", iid), "give the command after --"), (("write", iid, "p-1"), "give DATA"),
                       (("kill", iid, "p-1", "--signal", "NOPE"), "unknown signal")):
        refused = cli(home, "process", *args)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    interactive = cli(home, "instance", "exec", "-i", iid, "print(1)")
    assert interactive.returncode == 2 and "exec -i runs a command" in interactive.stderr
    ok(home, "instance", "stop", iid)
