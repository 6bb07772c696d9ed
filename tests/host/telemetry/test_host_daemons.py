"""What the host's daemons show through the host: with ``host serve --metrics-listen`` each provider daemon
it starts serves its own loopback /metrics, which the host's /metrics re-exposes labelled ``provider`` (one
scrape target per host); a daemon's log lines reach the host's log with the provider named; and the pump
that reads them never holds the daemon up."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.host.telemetry.test_traces_metrics_logs import json_lines, metrics_url, scrape, value
from tests.support import HostProcess, wait_for
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons


def test_the_hosts_metrics_carry_its_daemons_and_their_logs_reach_its_log(tmp_path: Path) -> None:
    host = HostProcess(tmp_path, "--metrics-listen", "127.0.0.1:0", "--log-format", "json")
    try:
        url = metrics_url(host)
        host.stub.PutLink(pb.LinkConfig(source_component="seen", interfaces=["generator"], target_provider="morph"))

        def call(**operation: object) -> host_pb.ProviderCallReply:
            return host.stub.CallProvider(host_pb.ProviderCallRequest(source="seen", **operation), timeout=120)

        iid = call(start=pb.StartRequest(language="python")).instance.instance_id
        before = scrape(url)
        assert value(before, "worldrt_daemon_up", provider="morph") == 1
        for _ in range(3):
            call(execute=pb.ExecuteRequest(instance_id=iid, code="1"))
        after = scrape(url)
        # the daemon's own counter, through the host's endpoint, moved by exactly the calls made
        assert value(after, "worldrt_provider_requests_total", provider="morph", operation="Execute", code="OK") - value(
            before, "worldrt_provider_requests_total", provider="morph", operation="Execute", code="OK") == 3
        assert value(after, "worldrt_sandbox_instances", provider="morph") == 1
        # the host's own counter of the same calls, in the same exposition
        assert value(after, "worldrt_provider_calls_total", provider="morph", operation="execute", code="OK") - value(
            before, "worldrt_provider_calls_total", provider="morph", operation="execute", code="OK") == 3
        # the daemon's process metrics, labelled with its provider beside the host's own
        assert value(after, "process_cpu_seconds_total", provider="morph") > 0
        assert value(after, "process_cpu_seconds_total") > 0

        # the daemon's log lines are in the host's log, the provider named (JSON, as the host's format)
        host_pid = host.proc.pid
        line = wait_for(lambda: next((d for d in json_lines(host.log_path) if d.get("provider") == "morph"), None),
                        30, "a line of the morph daemon's in the host's log")
        assert line["pid"] == host_pid and line["logger"] == "worldrt.provider.morph"
        call(stop=pb.InstanceRef(instance_id=iid))
    finally:
        host.stop()


def test_the_log_pump_never_holds_the_daemon_up(tmp_path: Path) -> None:
    from worldrt.host.routing import _daemon_logs

    gate, seen = threading.Event(), []
    gate.set()

    class Stuck(logging.Handler):
        """The host's log, which the test makes hang."""

        def emit(self, record: logging.LogRecord) -> None:
            gate.wait(60)
            seen.append((record.levelno, record.getMessage(), getattr(record, "provider", ""),
                         getattr(record, "trace_id", "")))

    logger = logging.getLogger("worldrt.provider.fake")
    handler = Stuck()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    lines = 3 * _daemon_logs.MAX_QUEUED
    script = (
        "import json, sys\n"
        f"sys.stderr.write('x' * {4 * _daemon_logs.MAX_LINE} + '\\n')\n"
        "sys.stderr.write(json.dumps({'level': 'WARNING', 'message': 'traced', 'trace_id': 'ab' * 16, "
        "'span_id': 'cd' * 8}) + '\\n')\n"
        "sys.stderr.flush()\n"
        "sys.stdin.readline()\n"
        f"for i in range({lines}): sys.stderr.write(f'2026-01-01 00:00:00,000 fake[1] INFO line {{i}}\\n')\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stderr is not None and child.stdin is not None
        pump = _daemon_logs.DaemonLog("fake", child.stderr, tmp_path / "fake.log")
        wait_for(lambda: len(seen) >= 2 or None, 30, "the daemon's first two lines in the host's log")
        cut, traced = seen[:2]
        assert cut[2] == "fake" and cut[1].endswith(f"[line cut at {_daemon_logs.MAX_LINE} bytes]")
        assert len(cut[1]) < _daemon_logs.MAX_LINE + 100
        assert traced == (logging.WARNING, "traced", "fake", "ab" * 16)
        # the host's log hangs: the daemon still writes all it has and exits
        gate.clear()
        child.stdin.write(b"go\n")
        child.stdin.close()
        assert child.wait(60) == 0
        gate.set()
        pump.join(60)
        assert pump.dropped > 0
        assert any("dropped" in message for _, message, _, _ in seen)
        assert seen[-1][:3] == (logging.INFO, f"line {lines - 1}", "fake")
        assert (tmp_path / "fake.log").read_text().splitlines()[-1].endswith(f"line {lines - 1}")
    finally:
        gate.set()
        child.kill()
        child.wait()
        logger.removeHandler(handler)
