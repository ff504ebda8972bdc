"""docs/metrics.md lists exactly the metrics the code exports, named by the conventions."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from producers.gateway import GatewayMetrics
from producers.metrics import ProducerMetrics
from streams.metrics import WorkerMetrics
from tests.paths import ROOT

CATALOGUE = ROOT / "docs" / "metrics.md"


def _exported() -> dict[str, str]:
    names = {}
    # A registry each: the worker and the producer both export `flashsale_run_info`.
    for metrics in (WorkerMetrics, ProducerMetrics, GatewayMetrics):
        registry = CollectorRegistry()
        metrics(registry)
        for family in registry.collect():
            name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
            names[name] = family.type
    return names


def test_catalogue_lists_every_exported_metric_and_nothing_else() -> None:
    documented = set(re.findall(r"`(flashsale_[a-z0-9_]+)`", CATALOGUE.read_text()))
    assert documented == set(_exported())


def test_metric_names_follow_the_conventions() -> None:
    for name, kind in _exported().items():
        assert name.startswith("flashsale_")
        assert name.endswith("_total") == (kind == "counter"), name
        assert name.endswith("_info") == (kind == "info"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
        # A unit, where there is one, comes last (before `_total`): no dimension in a name.
        assert "_by_" not in name, name


def test_counters_export_no_created_series() -> None:
    from prometheus_client import generate_latest

    registry = CollectorRegistry()
    WorkerMetrics(registry)
    assert b"_created" not in generate_latest(registry)
