"""The example Grafana dashboard only charts metrics the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import indexer.metrics
import ingest.metrics
import scribe_runtime.metrics
import transcriber.metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "scribe-dashboard.json"
_SUFFIXES = ("_bucket", "_sum", "_count", "_total")
# Importing them registers every metric of every service in the default registry.
METRIC_MODULES = (indexer.metrics, ingest.metrics, scribe_runtime.metrics, transcriber.metrics)


def test_every_scribe_metric_in_the_dashboard_exists() -> None:
    exported = {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        family.name for family in REGISTRY.collect()
    }
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\bscribe_[a-z_]+", expr)}
    assert used
    for name in used:
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
        assert name in exported or base in exported, f"{name} is not exported by any service"
