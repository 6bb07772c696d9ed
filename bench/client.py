"""Client benchmark: what worldrt.Client adds to an exec over the raw gRPC call through the same host.

    python bench/client.py [--reps 600] [--json bench/results/client.json]

One run, against one `worldrt host serve` (worldrt.testing.Runtime, in a temporary folder) and one morph
instance running ``1``:
* raw: ``Host.CallProvider(execute)`` on a gRPC channel carrying the host's token, the request built per
  call as a caller must;
* client: ``Instance.exec("1")`` of a ``worldrt.Client`` connected to the same host;
* the client's own cost per exec, paired: each client call's time minus the time its gRPC call took
  inside it (the stub is wrapped with a timer), so the machine's noise falls on both parts alike;
* this process's CPU per call, raw and client, over each round's batch (less swayed by the machine's load
  than wall time; the host and the daemon are other processes);
* the same for an embedded host (``Client`` over the in-process ``Host`` vs ``Host.call_provider``), and
  for ``AsyncClient`` over grpc.aio vs the raw grpc.aio call (difference of p50s).
Raw and client calls are interleaved in rounds. Target: the client's own cost <= 100 µs p50.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, timed, write_json

from worldrt.client import AsyncClient, Client
from worldrt.providers import open_aio_channel, open_channel
from worldrt.testing import Runtime
from worldrt.v1 import host_pb, host_rpc, pb

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 10


class _TimedStub:
    """The host stub with CallProvider timed: ``inner`` holds each call's seconds inside gRPC."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self.inner: list[float] = []
        call = stub.CallProvider

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.inner.append(time.perf_counter() - t0)

        self.CallProvider = timed_call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)


def paired(fn: Callable[[], object], inner: list[float], reps: int) -> tuple[list[float], list[float]]:
    """(total µs, own µs = total minus the time inside gRPC) of ``reps`` calls of ``fn``."""
    totals, own = [], []
    for _ in range(reps):
        inner.clear()
        t0 = time.perf_counter()
        fn()
        total = time.perf_counter() - t0
        totals.append(total * 1e6)
        own.append((total - sum(inner)) * 1e6)
    return totals, own


def cpu_per_call(fn: Callable[[], object], n: int) -> float:
    """This process's CPU µs per call of ``fn``, over ``n`` calls."""
    c0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - c0) * 1e6 / n


def remote_rows(rt: Runtime, reps: int) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    token = (rt.folder / "host.token").read_text().strip()
    md = (("authorization", f"Bearer {token}"),)
    inst = rt.client.start("morph")
    source = "client-morph"  # the link the client put: raw calls take the same route
    stub = host_rpc.HostStub(open_channel(rt.address, token=token))

    def raw() -> object:
        request = host_pb.ProviderCallRequest(source=source, execute=pb.ExecuteRequest(instance_id=inst.id, code="1"))
        return stub.CallProvider(request, metadata=md).execution.value_json

    api: Any = rt.client._api  # the RemoteHost behind the client: its stub gets a timer
    timer = _TimedStub(api._stub)
    api._stub = timer
    rt.client._call_provider = api.call_provider  # the client resolves the method once: again, with the timer
    for fn in (raw, lambda: inst.exec("1")):
        timed(fn, 50, unit=1e6)
    for _ in range(ROUNDS):
        rows.setdefault("raw CallProvider (host serve)", []).extend(timed(raw, reps // ROUNDS, unit=1e6))
        total, own = paired(lambda: inst.exec("1"), timer.inner, reps // ROUNDS)
        rows.setdefault("Client.exec (host serve)", []).extend(total)
        rows.setdefault("Client's own cost (host serve)", []).extend(own)
        rows.setdefault("CPU per raw CallProvider (host serve)", []).append(cpu_per_call(raw, reps // ROUNDS))
        rows.setdefault("CPU per Client.exec (host serve)", []).append(
            cpu_per_call(lambda: inst.exec("1"), reps // ROUNDS))
    inst.stop()
    return rows


def embedded_rows(reps: int) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="worldrt-bench-client-") as tmp, \
            Client.connect(home=tmp, db=Path(tmp) / "world.duckdb") as client:
        inst = client.start("morph")
        host: Any = client._api
        request = pb.ExecuteRequest(instance_id=inst.id, code="1")
        inner: list[float] = []
        call = host.call_provider

        def timed_call(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return call(*args)
            finally:
                inner.append(time.perf_counter() - t0)

        def raw() -> object:
            return call(host_pb.ProviderCallRequest(source="client-morph", execute=request)).execution.value_json

        host.call_provider = timed_call
        client._call_provider = timed_call  # the client resolved the method once: give it the timed one
        for fn in (raw, lambda: inst.exec("1")):
            timed(fn, 50, unit=1e6)
        for _ in range(ROUNDS):
            rows.setdefault("raw Host.call_provider (embedded)", []).extend(timed(raw, reps // ROUNDS, unit=1e6))
            total, own = paired(lambda: inst.exec("1"), inner, reps // ROUNDS)
            rows.setdefault("Client.exec (embedded)", []).extend(total)
            rows.setdefault("Client's own cost (embedded)", []).extend(own)
        inst.stop()
    return rows


async def async_rows(address: str, folder: Path, reps: int) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    token = (folder / "host.token").read_text().strip()
    md = (("authorization", f"Bearer {token}"),)
    async with await AsyncClient.connect(address, home=folder, embed=False) as rt:
        inst = await rt.start("morph")
        channel = open_aio_channel(address, token=token)
        stub = host_rpc.HostStub(channel)

        async def raw() -> None:
            request = host_pb.ProviderCallRequest(source="client-morph",
                                                  execute=pb.ExecuteRequest(instance_id=inst.id, code="1"))
            (await stub.CallProvider(request, metadata=md)).execution.value_json  # noqa: B018

        async def sample(fn: Callable[[], Any], n: int) -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await fn()
                out.append((time.perf_counter() - t0) * 1e6)
            return out

        for fn in (raw, lambda: inst.exec("1")):
            await sample(fn, 50)
        for _ in range(ROUNDS):
            rows.setdefault("raw CallProvider, grpc.aio (host serve)", []).extend(await sample(raw, reps // ROUNDS))
            rows.setdefault("AsyncClient.exec (host serve)", []).extend(
                await sample(lambda: inst.exec("1"), reps // ROUNDS))
        await inst.stop()
        await channel.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=600)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "client.json"))
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}
    with Runtime.start_local(server=True) as rt:
        rows.update(remote_rows(rt, args.reps))
        rows.update(asyncio.run(async_rows(rt.address, rt.folder, args.reps)))
    rows.update(embedded_rows(args.reps))
    stats = {name: percentiles(samples) for name, samples in rows.items()}
    added = {
        "remote_p50_difference": stats["Client.exec (host serve)"]["p50"] - stats["raw CallProvider (host serve)"]["p50"],
        "remote_own_p50": stats["Client's own cost (host serve)"]["p50"],
        "embedded_p50_difference": stats["Client.exec (embedded)"]["p50"]
        - stats["raw Host.call_provider (embedded)"]["p50"],
        "embedded_own_p50": stats["Client's own cost (embedded)"]["p50"],
        "remote_cpu_p50_difference": stats["CPU per Client.exec (host serve)"]["p50"]
        - stats["CPU per raw CallProvider (host serve)"]["p50"],
        "async_p50_difference": stats["AsyncClient.exec (host serve)"]["p50"]
        - stats["raw CallProvider, grpc.aio (host serve)"]["p50"],
    }
    print_table("worldrt.Client per exec (µs)", ["path", "p50", "p99", "min", "n"],
                [[name, f"{s['p50']:.1f}", f"{s['p99']:.1f}", f"{s['min']:.1f}", str(s["n"])]
                 for name, s in stats.items()])
    print(f"the client's own cost per exec: {added['remote_own_p50']:.1f} µs p50 over a running host "
          f"(p50 difference {added['remote_p50_difference']:+.1f} µs, this process's CPU "
          f"{added['remote_cpu_p50_difference']:+.1f} µs), {added['embedded_own_p50']:.1f} µs embedded "
          f"(difference {added['embedded_p50_difference']:+.1f} µs); AsyncClient {added['async_p50_difference']:+.1f} µs "
          f"over raw grpc.aio (target: own cost <= 100 µs p50)")
    write_json(args.json, {"stats_us": stats, "client_cost_us": added, "target_us_p50": 100})


if __name__ == "__main__":
    main()
