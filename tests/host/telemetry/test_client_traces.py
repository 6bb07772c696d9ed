"""A client call and a CLI command are each one trace: ``worldrt.Client``, ``worldrt.AsyncClient`` and the
``worldrt`` command make the root span, and the host's span for the call is its child, across the process
boundary. Each runs in a process of its own (tracing is per process), against a real host and a real OTLP
receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import HostProcess, wait_for
from tests.support.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.daemons
INTERNAL, SERVER, CLIENT = 1, 2, 3
ERROR = 2

CLIENTS = """
import asyncio, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from worldrt import AsyncClient, Client
from worldrt.errors import NotFound

app = TracerProvider()  # the application's own tracing, set up first
trace.set_tracer_provider(app)
with Client.connect(sys.argv[1], embed=False) as rt:
    rt.links.list()
    try:
        rt.components.run(sys.argv[2], verse=1)
    except NotFound:
        pass
    with trace.get_tracer("app").start_as_current_span("app work") as work:
        rt.instances("modal")
        print(format(work.get_span_context().trace_id, "032x"), format(work.get_span_context().span_id, "016x"))
    rt.start("modal").stop()
print(trace.get_tracer_provider() is app)

async def main():
    async with await AsyncClient.connect(sys.argv[1], embed=False) as rt:
        await rt.links.list()

asyncio.run(main())
"""

def one(receiver: OtlpReceiver, service: str, name: str) -> ReceivedSpan:
    return wait_for(lambda: next((s for s in receiver.spans if s.service == service and s.name == name), None), 60,
                    f"the span {name} of {service}")


def child_of(receiver: OtlpReceiver, parent: ReceivedSpan) -> ReceivedSpan:
    return wait_for(lambda: next((s for s in receiver.spans if s.parent_id == parent.span_id), None), 60,
                    f"a child of {parent.name}")


@pytest.fixture
def host(tmp_path: Path, receiver: OtlpReceiver) -> Iterator[HostProcess]:
    (tmp_path / "host").mkdir()
    running = HostProcess(tmp_path / "host", env=receiver.env(OTEL_SERVICE_NAME="worldrt-host"))
    yield running
    running.stop()


def _env(host: HostProcess, receiver: OtlpReceiver) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OTEL_SERVICE_NAME"}
    return {**env, "WORLDRT_STATE_DIR": str(host.home), "WORLDRT_TOKEN": host.token, **receiver.env()}


def test_each_client_call_is_a_trace_the_host_continues(host: HostProcess, receiver: OtlpReceiver) -> None:
    missing = host.home / "missing.wasm"
    ran = subprocess.run([sys.executable, "-c", CLIENTS, host.address, str(missing)], env=_env(host, receiver),
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    app_ids, app_kept = ran.stdout.split("\n")[:2]
    assert app_kept == "True"  # the client left the application's tracer provider as it was

    listed = one(receiver, "worldrt-client", "worldrt.Client/list_links")
    assert (listed.kind, listed.parent_id, listed.status) == (CLIENT, "", 0)
    served = child_of(receiver, listed)
    assert (served.service, served.name, served.kind, served.trace_id) == (
        "worldrt-host", "worldrt.v1.Host/ListLinks", SERVER, listed.trace_id)

    failed = one(receiver, "worldrt-client", "worldrt.Client/components.run")
    assert (failed.status, failed.attributes["rpc.grpc.status_code"]) == (ERROR, 5)  # NOT_FOUND
    assert child_of(receiver, failed).name == "worldrt.v1.Host/LoadComponent"

    # inside the application's span: a child of it, in its trace
    trace_id, span_id = app_ids.split()
    listed_in_app = one(receiver, "worldrt-client", "worldrt.Client/list_instances")
    assert (listed_in_app.trace_id, listed_in_app.parent_id) == (trace_id, span_id)

    # a provider operation is one span, whatever host calls it takes (the link it needs, then the call)
    started = one(receiver, "worldrt-client", "worldrt.Client/start")
    def children() -> set[str] | None:
        names = {s.name for s in receiver.spans if s.parent_id == started.span_id}
        return names if {"worldrt.v1.Host/ListLinks", "worldrt.v1.Host/CallProvider"} <= names else None

    wait_for(children, 60, "the host's spans of the start (the link it looked up, then the call)")
    assert not [s for s in receiver.spans if s.name in ("worldrt.Client/call_provider", "worldrt.Client/put_link")]

    awaited = one(receiver, "worldrt-client", "worldrt.AsyncClient/list_links")
    assert (awaited.kind, awaited.parent_id) == (CLIENT, "")
    assert child_of(receiver, awaited).name == "worldrt.v1.Host/ListLinks"
    assert len({listed.trace_id, failed.trace_id, awaited.trace_id}) == 3


def test_a_cli_command_is_a_trace_the_host_continues(host: HostProcess, receiver: OtlpReceiver) -> None:
    run = subprocess.run([sys.executable, "-m", "worldrt.host.cli", "link", "list", "--host", host.address],
                         env=_env(host, receiver), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    command = one(receiver, "worldrt-cli", "worldrt link list")
    assert (command.kind, command.parent_id, command.status) == (INTERNAL, "", 0)
    served = child_of(receiver, command)
    assert (served.service, served.name, served.trace_id) == ("worldrt-host", "worldrt.v1.Host/ListLinks",
                                                              command.trace_id)

    missing = subprocess.run([sys.executable, "-m", "worldrt.host.cli", "component", "run", str(host.home / "missing.wasm"),
                              "--verse", "1", "--host", host.address], env=_env(host, receiver), capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 3, missing.stderr  # NotFound
    failed = one(receiver, "worldrt-cli", "worldrt component run")
    assert (failed.status, failed.attributes["rpc.grpc.status_code"]) == (ERROR, 5)
