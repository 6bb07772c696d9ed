"""The Grafana dashboard users import (docs/grafana-worldrt.json) plots only metrics worldrt exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from worldrt.telemetry import METRICS

pytestmark = pytest.mark.pure
DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana-worldrt.json"
# Names a host adds when it re-exposes its daemons' metrics, and the series a histogram makes.
EXTRA = {"worldrt_daemon_up"}


def exported() -> set[str]:
    names = set(EXTRA)
    for name, (kind, _help, _labels) in METRICS.items():
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def test_every_panel_plots_exported_metrics() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {name for panel in panels for target in panel["targets"]
            for name in re.findall(r"\bworldrt_[a-z_]+\b", target["expr"])}
    assert used and used <= exported(), used - exported()
    assert "worldrt_daemon_up" in used
