"""The morphcloud SDK through `worldrt api serve morph`, beside the same operations over gRPC directly and
beside Morph Cloud's published < 250 ms for snapshot and branch, in one run; plus the SDK's client start-up.

    python bench/morph_api.py [--reps 20] [--json bench/results/morph_api.json]

The API server embeds a host (every call goes host → generator link → morph daemon, and is recorded);
the gRPC rows call a second morph daemon of its own directly. A bare HTTP round trip to the API server
(GET /api/image) is measured in the same run as the HTTP stack's floor. The operations are measured in
interleaved rounds, so the noise of a shared machine falls on each row alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, timed, write_json

from tests.support.morph_api import MorphApiServer
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

MORPH_CLAIM_MS = 250.0


def client_startup(server: MorphApiServer, shards: str, reps: int) -> list[float]:
    from morphcloud.api import MorphCloudClient

    before = os.environ.get("MORPH_HTTP_TRANSPORT_SHARDS")
    os.environ["MORPH_HTTP_TRANSPORT_SHARDS"] = shards
    try:
        return timed(lambda: MorphCloudClient(api_key=server.key, base_url=server.base_url), reps)
    finally:
        if before is None:
            os.environ.pop("MORPH_HTTP_TRANSPORT_SHARDS", None)
        else:
            os.environ["MORPH_HTTP_TRANSPORT_SHARDS"] = before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "morph_api.json"))
    args = ap.parse_args()
    reps = max(args.reps, 5)
    rows: dict[str, list[float]] = {}

    with tempfile.TemporaryDirectory(prefix="worldrt-bench-morph-api-") as tmp:
        server = MorphApiServer(Path(tmp) / "api")
        daemon = ProviderDaemon("morph", state_dir=Path(tmp) / "morph", options={"pool_size": "2"}).start()
        try:
            rows["SDK client start-up (32 shards, the default)"] = client_startup(server, "32", 3)
            rows["SDK client start-up (MORPH_HTTP_TRANSPORT_SHARDS=1)"] = client_startup(server, "1", reps)
            client = server.client()
            instance = client.instances.start(client.snapshots.create().id)
            stub = daemon.stub
            iid = stub.Start(pb.StartRequest(language="shell")).instance_id
            shell = pb.ExecuteRequest(instance_id=iid, language="shell", code="true")
            release = lambda ref: stub.Stop(pb.InstanceRef(instance_id=ref.snapshot_id))  # noqa: E731

            def stop_branches(made: object) -> None:
                snap, children = made  # type: ignore[misc]
                for child in children:
                    child.stop()
                snap.delete()

            def snapshot_and_branch() -> tuple[pb.SnapshotRef, pb.BranchReply]:
                ref = stub.Snapshot(pb.SnapshotRequest(instance_id=iid))
                return ref, stub.Branch(pb.BranchRequest(snapshot_id=ref.snapshot_id, count=3))

            def stop_grpc(made: object) -> None:
                ref, reply = made  # type: ignore[misc]
                for child in reply.instances:
                    stub.Stop(pb.InstanceRef(instance_id=child.instance_id))
                release(ref)

            with httpx.Client(headers={"Authorization": f"Bearer {server.key}"}) as http:
                # name -> (call, untimed clean-up, reps per round); warmed once, then measured in interleaved
                # rounds, so the shared machine's noise falls on both columns alike.
                ops: dict[str, tuple[Callable[[], object], Callable[[object], None] | None, int]] = {
                    "bare HTTP GET /api/image": (lambda: http.get(f"{server.base_url}/image"), None, 2),
                    "SDK exec('true')": (lambda: instance.exec("true"), None, 2),
                    "gRPC Execute shell 'true'": (lambda: stub.Execute(shell), None, 2),
                    "SDK exec('true', on_stdout=...) (SSE)": (lambda: instance.exec("true", on_stdout=print), None, 2),
                    "gRPC ExecuteStream shell 'true'": (lambda: list(stub.ExecuteStream(shell)), None, 2),
                    "SDK instance.snapshot()": (instance.snapshot, lambda s: s.delete(), 1),  # type: ignore[attr-defined]
                    "gRPC Snapshot": (lambda: stub.Snapshot(pb.SnapshotRequest(instance_id=iid)), release, 1),
                    "SDK instance.branch(3)": (lambda: instance.branch(3), stop_branches, 1),
                    "gRPC Snapshot + Branch(3) (what branch(3) does)": (snapshot_and_branch, stop_grpc, 1),
                }
                for fn, after, _ in ops.values():
                    timed(fn, 2, after=after)
                rounds = 4
                for _ in range(rounds):
                    for name, (fn, after, per) in ops.items():
                        rows.setdefault(name, []).extend(timed(fn, max(1, reps * per // rounds), after=after))
            instance.stop()
            stub.Stop(pb.InstanceRef(instance_id=iid))
        finally:
            daemon.stop()
            server.stop()

    stats = {name: percentiles(samples) for name, samples in rows.items()}
    pairs = {"SDK exec('true')": "gRPC Execute shell 'true'",
             "SDK exec('true', on_stdout=...) (SSE)": "gRPC ExecuteStream shell 'true'",
             "SDK instance.snapshot()": "gRPC Snapshot",
             "SDK instance.branch(3)": "gRPC Snapshot + Branch(3) (what branch(3) does)"}
    claimed = ("SDK instance.snapshot()", "SDK instance.branch(3)", "gRPC Snapshot",
               "gRPC Snapshot + Branch(3) (what branch(3) does)")
    table = []
    for name, s in stats.items():
        direct = pairs.get(name)
        over = f"{s['p50'] - stats[direct]['p50']:+.2f} ms" if direct else ""
        claim = f"{s['p50'] / MORPH_CLAIM_MS:.3f}x" if name in claimed else ""
        table.append([name, f"{s['p50']:.2f}", f"{s['p99']:.2f}", str(s["n"]), over, claim])
    print_table("morphcloud SDK on worldrt vs gRPC direct (ms; shared 2-core machine)",
                ["operation", "p50", "p99", "n", "SDK over gRPC (p50)", "vs Morph < 250 ms"], table)
    write_json(args.json, {"stats_ms": stats, "pairs": pairs, "morph_claim_ms": MORPH_CLAIM_MS,
                           "note": "SDK rows go SDK -> HTTP -> api serve morph -> embedded host -> morph daemon; "
                                   "gRPC rows call a morph daemon directly; taken on a shared machine"})


if __name__ == "__main__":
    main()
