"""A provider daemon's own /metrics: requests counted by operation and status code, exactly; instances
live and warm sandboxes read at each scrape."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import wait_for
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_daemon_counts_exactly_the_requests_it_handled() -> None:
    with ProviderDaemon("morph", serve_args=("--metrics-listen", "127.0.0.1:0", "--log-format", "json")) as daemon:
        def url() -> str | None:
            for line in Path(daemon.log_path).read_text(errors="replace").splitlines():
                if line.startswith("{") and json.loads(line).get("message", "").startswith("metrics at "):
                    return str(json.loads(line)["message"]).removeprefix("metrics at ")
            return None

        where = wait_for(url, 30, "the daemon's metrics listener in its log")
        before = scrape(where)
        iid = daemon.stub.Start(pb.StartRequest(language="python")).instance_id
        for _ in range(3):
            daemon.stub.Execute(pb.ExecuteRequest(instance_id=iid, code="1"))
        with pytest.raises(grpc.RpcError):
            daemon.stub.Execute(pb.ExecuteRequest(instance_id="i-nope", code="1"))
        after = scrape(where)

        def moved(operation: str, code: str) -> float:
            key = ("worldrt_provider_requests_total",
                   frozenset({"provider": "morph", "operation": operation, "code": code}.items()))
            return after.get(key, 0.0) - before.get(key, 0.0)

        assert (moved("Start", "OK"), moved("Execute", "OK"), moved("Execute", "NOT_FOUND")) == (1, 3, 1)
        assert after[("worldrt_sandbox_instances", frozenset({"provider": "morph"}.items()))] == 1
        assert ("worldrt_warm_pool_size", frozenset({"provider": "morph"}.items())) in after
        daemon.stub.Stop(pb.InstanceRef(instance_id=iid))
        assert scrape(where)[("worldrt_sandbox_instances", frozenset({"provider": "morph"}.items()))] == 0
