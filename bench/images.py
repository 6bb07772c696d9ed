"""Images and files benchmark: building a numpy image (first and cached), starting from it beside a warm
Start of the default image, and file write/read throughput beside a plain ``cp`` of the same bytes.

    python bench/images.py [--reps 20] [--mib 32] [--json bench/results/images.json]

The first build downloads numpy from PyPI in the build sandbox. Start is measured with the warm pools
given a moment to refill between calls, as between real requests, for the default image and the built
one alike (interleaved, so the machine's noise falls on both). Throughput is MB/s (10^6 bytes per
second) of one file of ``--mib`` MiB: WriteFiles and ReadFile over gRPC, and ``cp`` of the same bytes
on the host from disk to disk and from /dev/shm to /dev/shm (the instance's disk lives in memory).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import percentiles, print_table, write_json

START_TARGET = 1.5  # Start from a built image within 1.5x of a warm Start


def _build(stub: Any, name: str) -> tuple[float, pb.Image]:
    t0 = time.perf_counter()
    events = list(stub.BuildImage(pb.BuildImageRequest(name=name, pip=["numpy"]), timeout=1200))
    return (time.perf_counter() - t0) * 1000, events[-1].image


def _cp_mb_s(folder: Path, data: bytes, reps: int) -> list[float]:
    src, dst = folder / "wt11-bench-src.bin", folder / "wt11-bench-dst.bin"
    src.write_bytes(data)
    out = []
    try:
        for _ in range(reps):
            dst.unlink(missing_ok=True)
            t0 = time.perf_counter()
            subprocess.run(["cp", str(src), str(dst)], check=True)
            out.append(len(data) / 1e6 / (time.perf_counter() - t0))
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "images.json"))
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}
    mbs: dict[str, list[float]] = {}
    extra: dict[str, object] = {}
    data = os.urandom(args.mib * 1024 * 1024)

    with tempfile.TemporaryDirectory(prefix="worldrt-bench-images-") as tmp:
        with ProviderDaemon("morph", state_dir=Path(tmp) / "state", options={"pool_size": "2"}) as daemon:
            stub = daemon.stub
            first_ms, image = _build(stub, "bench-numpy")
            rows["build numpy image (first, from PyPI)"] = [first_ms]
            cached = [_build(stub, f"bench-numpy-{i}")[0] for i in range(args.reps)]
            rows["build numpy image (cached: same request)"] = cached
            extra["image"] = {"digest": image.digest, "packages": list(image.packages), "size_bytes": image.size_bytes}

            def start(image_name: str) -> float:
                time.sleep(0.25)  # the warm pools refill between calls
                t0 = time.perf_counter()
                inst = stub.Start(pb.StartRequest(image=image_name))
                took = (time.perf_counter() - t0) * 1000
                stub.Stop(pb.InstanceRef(instance_id=inst.instance_id))
                return took

            for _ in range(args.reps):
                rows.setdefault("Start (default image, warm)", []).append(start(""))
                rows.setdefault("Start (built numpy image)", []).append(start("bench-numpy"))
            iid = stub.Start(pb.StartRequest(image="bench-numpy")).instance_id
            check = stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import numpy; numpy.__version__"))
            extra["numpy_in_image"] = check.value_json
            stub.Stop(pb.InstanceRef(instance_id=iid))

            limits = pb.Limits(disk_mb=args.mib * 3, file_size_mb=args.mib * 2)
            iid = stub.Start(pb.StartRequest(limits=limits)).instance_id
            for _ in range(max(3, args.reps // 4)):
                t0 = time.perf_counter()
                stub.WriteFiles(pb.WriteFilesRequest(instance_id=iid, files=[pb.FileEntry(path="big.bin", data=data)]))
                mbs.setdefault("WriteFiles (gRPC, into the sandbox)", []).append(
                    len(data) / 1e6 / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                got = b"".join(c.data for c in stub.ReadFile(pb.ReadFileRequest(instance_id=iid, path="big.bin")))
                mbs.setdefault("ReadFile (gRPC, streamed out)", []).append(len(got) / 1e6 / (time.perf_counter() - t0))
                assert got == data
            stub.Stop(pb.InstanceRef(instance_id=iid))
        mbs["cp on the host (disk to disk)"] = _cp_mb_s(Path(tmp), data, max(3, args.reps // 4))
        if Path("/dev/shm").is_dir() and shutil.disk_usage("/dev/shm").free > 3 * len(data):
            mbs["cp on the host (/dev/shm to /dev/shm)"] = _cp_mb_s(Path("/dev/shm"), data, max(3, args.reps // 4))

    stats = {name: percentiles(samples) for name, samples in rows.items()}
    warm, built = stats["Start (default image, warm)"]["p50"], stats["Start (built numpy image)"]["p50"]
    ratio = built / warm if warm else float("nan")
    table = [[name, f"{s['p50']:.2f}", f"{s['p99']:.2f}", str(s["n"]),
              f"{ratio:.2f}x warm (target <= {START_TARGET}x)" if name == "Start (built numpy image)" else ""]
             for name, s in stats.items()]
    print_table("images (ms)", ["operation", "p50", "p99", "n", ""], table)
    rates = {name: percentiles(samples) for name, samples in mbs.items()}
    print_table(f"files of {args.mib} MiB (MB/s)", ["operation", "p50", "min", "n"],
                [[name, f"{s['p50']:.0f}", f"{s['min']:.0f}", str(s["n"])] for name, s in rates.items()])
    print(f"Start from the built image / warm Start = {ratio:.2f} "
          f"({'PASS' if ratio <= START_TARGET else 'MISS'} against <= {START_TARGET}); numpy in it: "
          f"{extra['numpy_in_image']}. Taken on a shared machine: figures are noisy.")
    write_json(args.json, {"stats_ms": stats, "throughput_mb_s": rates, "start_ratio": ratio,
                           "start_target_met": ratio <= START_TARGET, "file_mib": args.mib, **extra})


if __name__ == "__main__":
    main()
