"""A slow instance slows only itself (issue 18, finding 9), on the provider daemon itself.

Calls on one instance run one at a time: 45 long execs sent to one instance get one running, 8 waiting
and the rest refused at once with RESOURCE_EXHAUSTED naming the instance and the limit, instead of
piling up in the daemon. Meanwhile health answers SERVING within a bound and another instance is
served; a Stop of the busy instance is never refused and ends every call on it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support import wait_for
from worldrt.providers import open_channel
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons
SLEEP = "import time\ntime.sleep(30)\n'woke'"


def outcome(call: Any) -> tuple[str, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


@pytest.mark.parametrize("name", ["morph", "modal"])
def test_45_long_execs_on_one_instance_wait_at_most_8_and_leave_the_daemon_serving(
        name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    with ProviderDaemon(name, state_dir=tmp_path_factory.mktemp(name), options={"pool_size": "1"}) as daemon:
        stub = daemon.stub
        busy = stub.Start(pb.StartRequest()).instance_id
        other = stub.Start(pb.StartRequest()).instance_id
        with ThreadPoolExecutor(max_workers=45) as pool:
            started = time.monotonic()
            futures = [pool.submit(outcome, lambda: stub.Execute(pb.ExecuteRequest(instance_id=busy, code=SLEEP),
                                                                 timeout=120)) for _ in range(45)]
            refused = wait_for(lambda: len([f for f in futures if f.done()]) >= 36 or None, 30,
                               "36 calls past the instance's limit were not refused")
            assert refused and time.monotonic() - started < 30
            done = [f.result() for f in futures if f.done()]
            assert len(done) == 36 and {c for c, _ in done} == {"RESOURCE_EXHAUSTED"}, done
            assert all(f"instance {busy} is busy: one call runs on it and 8 more wait, the limit per instance (8)"
                       in d for _, d in done), done[0]
            with open_channel(daemon.address) as channel:
                health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert stub.Execute(pb.ExecuteRequest(instance_id=other, code="3 * 3"), timeout=30).value_json == "9"
            stub.Stop(pb.InstanceRef(instance_id=busy), timeout=30)
            rest = [f.result(timeout=60) for f in futures]
        codes = sorted(c for c, _ in rest)
        assert codes.count("RESOURCE_EXHAUSTED") == 36 and "OK" not in codes, codes
        assert codes.count("FAILED_PRECONDITION") == 8, codes  # the waiting ones: "instance ... is stopped"
        stub.Stop(pb.InstanceRef(instance_id=other))
        log = daemon.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
