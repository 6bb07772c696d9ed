"""A benchmark's OTLP collector: a receiver in another process that only counts the spans sent to it (a
collector on another machine would cost this one nothing more), and the standard variables that send
this process's and its children's traces there."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_RECEIVER = ("import sys; from tests.support.otlp import OtlpReceiver; r = OtlpReceiver(keep=False); "
             "print(r.endpoint, flush=True); sys.stdin.read(); print(r.count, flush=True); r.stop()")


@contextmanager
def collector(received: list[int]) -> Iterator[None]:
    """Traces on for this process's children (and for ``telemetry.start_tracing``) while inside, in the SDK's
    default batches; the number of spans the receiver got is appended to ``received`` at the end."""
    receiver = subprocess.Popen([sys.executable, "-c", _RECEIVER], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdin is not None
    saved = dict(os.environ)
    try:
        os.environ.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.stdout.readline().strip(),
                          OTEL_EXPORTER_OTLP_INSECURE="true", OTEL_TRACES_EXPORTER="otlp")
        os.environ.pop("OTEL_BSP_SCHEDULE_DELAY", None)  # the SDK's default: a batch every 5 s
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        receiver.stdin.close()
        received.append(int(receiver.stdout.readline() or 0))
        receiver.wait(timeout=30)
        print(f"spans received by the bench's OTLP receiver (another process): {received[-1]}")
