from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.otlp import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP trace receiver on 127.0.0.1 for one test."""
    running = OtlpReceiver()
    yield running
    running.stop()
